"""Training curves of the static rules, side by side: test accuracy against
wall-clock time, and the angle between each rule's update and backprop's
gradient as training goes on.

Every rule trains the same stock MLP (same initial weights, same data order)
through the Learner loop on scikit-learn's 8x8 digits; after every epoch the
script records the test accuracy, the training time so far (evaluation
excluded) and, on a fixed batch of held-out digits,
`localgrad.metrics.update_alignment`: per weight matrix, the angle between
the `.grad` one step of the rule writes and backprop's gradient.

    python benchmarks/training_curves.py --json benchmarks/results/curves-cpu-DATE.json \
        --plot-prefix benchmarks/results/curves-cpu-DATE
    python benchmarks/training_curves.py --from-json FILE --plot-prefix PREFIX   # plots only

The plots are PREFIX-accuracy.png and PREFIX-alignment.png; the docs publish
every PNG in benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing as timing  # noqa: E402

import localgrad  # noqa: E402
from localgrad import data  # noqa: E402
from localgrad.metrics import update_alignment  # noqa: E402
from localgrad.training import accuracy  # noqa: E402

DEFAULT_RULES = "backprop,fa,usf,frsf,dfa,eqprop,pc,pc-zil,dtp,ldrl,dni,cdni"


def make_model(widths: list[int], seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return timing.relu_mlp(widths)


def weight_angles(learner, x, y) -> dict[str, float]:
    return {name: angle for name, angle, _ in update_alignment(learner, x, y) if name.endswith("weight")}


def run_rule(rule: str, dataset, args) -> dict:
    model = make_model(args.widths, args.seed)
    learner = localgrad.learner(model, rule, seed=args.seed)
    optimizer = learner.default_optimizer(args.lr)
    generator = torch.Generator().manual_seed(args.seed)
    probe_x, probe_y = dataset.x_test[: args.probe], dataset.y_test[: args.probe]
    epochs = [{"epoch": 0, "seconds": 0.0, "test_accuracy": accuracy(learner, dataset.x_test, dataset.y_test),
               "angles": weight_angles(learner, probe_x, probe_y)}]
    elapsed = 0.0
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        for x, y in data.batches(dataset.x_train, dataset.y_train, args.batch_size, generator=generator):
            optimizer.zero_grad()
            learner.step(x, y)
            optimizer.step()
        elapsed += time.perf_counter() - start
        epochs.append({"epoch": epoch, "seconds": elapsed,
                       "test_accuracy": accuracy(learner, dataset.x_test, dataset.y_test),
                       "angles": weight_angles(learner, probe_x, probe_y)})
    last = epochs[-1]
    print(f"{rule:10s} {100 * last['test_accuracy']:5.1f} %  {last['seconds']:6.2f} s  "
          + "  ".join(f"{k.split('.')[0]}:{v:5.1f}°" for k, v in last["angles"].items()), flush=True)
    return {"rule": rule, "family": localgrad.rule_info(rule).family, "epochs": epochs,
            "final_accuracy": last["test_accuracy"], "train_seconds": last["seconds"],
            "seconds_per_epoch": last["seconds"] / args.epochs,
            "final_mean_angle": sum(last["angles"].values()) / max(1, len(last["angles"]))}


def plot(record: dict, prefix: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = record["rows"]
    # One colour per rule in both plots; tab20 has enough that none repeats.
    palette = plt.get_cmap("tab20").colors
    colour = {row["rule"]: "black" if row["rule"] == "backprop" else palette[(2 * i) % 20 + (2 * i) // 20]
              for i, row in enumerate(rows)}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        ax.plot([e["seconds"] for e in row["epochs"]], [100 * e["test_accuracy"] for e in row["epochs"]],
                marker=".", label=row["rule"], linestyle="-" if row["rule"] != "backprop" else "--",
                color=colour[row["rule"]])
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_xlabel("training time, s (CPU, evaluation excluded)")
    ax.set_ylabel("test accuracy, %")
    ax.set_title(f"8x8 digits, MLP {'-'.join(map(str, record['args']['widths']))}, {record['args']['epochs']} epochs")
    ax.legend(ncol=3, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(f"{prefix}-accuracy.png", dpi=110)
    plt.close(fig)

    layers = list(rows[0]["epochs"][0]["angles"])
    fig, axes = plt.subplots(1, len(layers), figsize=(4 * len(layers), 4), sharey=True)
    for ax, layer in zip(axes, layers):
        for row in rows:
            if row["rule"] == "backprop":
                continue
            ax.plot([e["epoch"] for e in row["epochs"]], [e["angles"].get(layer, float("nan")) for e in row["epochs"]],
                    marker=".", label=row["rule"], color=colour[row["rule"]])
        ax.set_title(layer)
        ax.set_xlabel("epoch")
        ax.axhline(90, color="grey", linewidth=0.8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("angle to backprop's gradient, degrees")
    axes[-1].legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(f"{prefix}-alignment.png", dpi=110)
    plt.close(fig)
    print(f"wrote {prefix}-accuracy.png and {prefix}-alignment.png")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rules", default=DEFAULT_RULES)
    p.add_argument("--widths", default="64-64-64-10", type=lambda s: [int(w) for w in s.split("-")])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=None, help="each rule's default optimizer's rate unless given")
    p.add_argument("--probe", type=int, default=256, help="held-out samples the angles are measured on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--plot-prefix", metavar="PREFIX")
    p.add_argument("--from-json", metavar="PATH", help="plot an earlier run instead of training")
    args = p.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            record = json.load(f)
    else:
        torch.set_num_threads(args.threads)
        dataset = data.digits(seed=args.seed)
        record = {"benchmark": "training_curves", **timing.environment(torch.device("cpu")),
                  "args": {k: v for k, v in vars(args).items() if k not in ("json", "plot_prefix", "from_json")},
                  "rows": [run_rule(rule, dataset, args) for rule in args.rules.split(",")]}
        if args.json:
            with open(args.json, "w") as f:
                json.dump(record, f, indent=1)
    if args.plot_prefix:
        plot(record, args.plot_prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
