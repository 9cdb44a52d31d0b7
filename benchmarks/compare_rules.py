"""Every static rule on full Fashion-MNIST: test accuracy (mean ± std over
seeds), wall time per epoch, time to reach 80 % and 85 %, peak memory.

    python benchmarks/compare_rules.py [--models mlp,cnn] [--rules backprop,dfa]
        [--repeats SEEDS] [--epochs N] [--jobs N] [--threads N] [--device cpu|cuda]
        [--json PATH] [--plot PATH] [--quick]
    localgrad bench compare [...the same]

Each row is one registered static rule (localgrad.rules(inputs="static"))
trained through the Learner API on the MLP 784-256-256-10 and, for the rules
that take it, the LeNet-like CNN (the demo's models and per-row exceptions,
localgrad.experiments.demo.ROW_MODELS / ROW_OPTIONS), from the same initial
weights and data order per seed. The budget (epochs, batch size, learning
rate of the rule's published optimizer, Learner.default_optimizer) is one
table per family, BUDGETS below, recorded in the JSON. A rule that refuses a
model (UnsupportedModelError) gets a row saying why.

Test accuracy is measured EVALS_PER_EPOCH times per epoch, on the first
PROBE_TEST test images except at the end of training (all 10,000), so the
time to reach an accuracy is read off training wall time (evaluation
excluded) at the first evaluation at or above it. Peak memory is the row's process peak
resident set (on CPU; with --jobs > 1 every row runs in a fresh process, so
it is that row's own), or torch's peak CUDA allocation on a GPU.

--quick: 2,000 training and 1,000 test images, one seed, one epoch (about
30 steps) per rule: a smoke run of every row in minutes, not a result.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import resource
import statistics
import sys
import time
import traceback
from typing import NamedTuple

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import args_record, benchmark_parser, print_table, start, write_json  # noqa: E402

import localgrad  # noqa: E402
from localgrad import data  # noqa: E402
from localgrad.experiments import demo  # noqa: E402
from localgrad.training import accuracy  # noqa: E402


class Budget(NamedTuple):  # not a dataclass: `localgrad bench` loads scripts outside sys.modules
    epochs: int
    batch_size: int
    lr: float | None  # None: the rate of the rule's own default_optimizer
    why: str


# One budget per family. The rule's optimizer is its learner's
# default_optimizer (Adam 1e-3 for most; EqProp: SGD with momentum and
# per-layer rates, Laborieux et al. 2021; target propagation: Adam with the
# feedback at 10x). Three epochs (one for the slow rules below) is what a
# three-seed table of every rule costs in about an hour on two shared CPU
# cores; a release run on a GPU should raise them (--epochs). The JSON
# records what each row got.
BUDGETS = {
    "feedback_alignment": Budget(3, 64, None, "Adam 1e-3, the learner's default_optimizer"),
    "eqprop": Budget(1, 64, None, "SGD momentum 0.9, rate 0.1 halving per layer (Laborieux et al. 2021)"),
    "predictive_coding": Budget(3, 64, None, "Adam 1e-3, the learner's default_optimizer"),
    "target_prop": Budget(3, 64, None, "Adam 1e-3, feedback weights at 1e-2 (Meulemans et al. 2020's range)"),
    "synthetic_gradients": Budget(3, 64, None, "Adam 1e-3 for the model and the synthetic-gradient modules"),
    "hebbian": Budget(3, 64, None, "Adam 1e-3 on the rule's update, the learner's default_optimizer"),
    "pepita": Budget(3, 64, None, "SGD lr 0.01, momentum 0.9 (Dellaferrera & Kreiman 2022), the default_optimizer"),
}
# A family without an entry (one registered after this table) gets this.
DEFAULT_BUDGET = Budget(3, 64, None, "the learner's default_optimizer")
# Rules whose step costs ~10x backprop's or more (measured: EqProp's phases,
# iPC's and FPA's inner loops, TP's per-layer noise passes): these get the
# SLOW_EPOCHS budget whatever their family's.
SLOW_RULES = ("eqprop", "eqprop-positive", "eqprop-negative", "chl", "pc-ipc", "pc-fpa", "tp")
SLOW_EPOCHS = 1
EVALS_PER_EPOCH = 4
PROBE_TEST = 2000  # test images of the evaluations before the last
THRESHOLDS = (0.80, 0.85)
QUICK_SIZES = (2000, 1000)


def budget_for(rule: str, epochs: int | None, quick: bool) -> Budget:
    b = BUDGETS.get(localgrad.rule_info(rule).family, DEFAULT_BUDGET)
    n = 1 if quick else epochs if epochs is not None else SLOW_EPOCHS if rule in SLOW_RULES else b.epochs
    return Budget(n, b.batch_size, b.lr, b.why)


def optimizer_record(optimizer: torch.optim.Optimizer) -> str:
    rates = sorted({g["lr"] for g in optimizer.param_groups}, reverse=True)
    extra = f", momentum {optimizer.defaults['momentum']}" if optimizer.defaults.get("momentum") else ""
    return f"{type(optimizer).__name__} lr {', '.join(f'{r:g}' for r in rates)}{extra}"


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def train_row(rule: str, model_name: str, seed: int, budget: Budget, device_name: str, sizes, threads) -> dict:
    """One (rule, model, seed): the row's record, or its refusal."""
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(device_name)
    ds = data.fashion_mnist(*sizes).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    record = {"rule": rule, "model": model_name, "seed": seed, "epochs": budget.epochs,
              "batch_size": budget.batch_size}
    torch.manual_seed(seed)
    try:
        model = demo.row_model(rule, model_name, ds, [256, 256]).to(device)
        learner = localgrad.learner(model, rule, seed=seed, example_input=ds.x_train[:2],
                                    **demo.ROW_OPTIONS.get((rule, model_name), {}))
    except localgrad.UnsupportedModelError as e:
        return {**record, "refused": str(e)}
    optimizer = learner.default_optimizer(budget.lr)
    record["optimizer"] = optimizer_record(optimizer)
    record["net"] = "" if (rule, model_name) not in demo.ROW_MODELS else demo.ROW_MODELS[(rule, model_name)].__name__
    n_train = ds.x_train.shape[0]
    steps_per_epoch = -(-n_train // budget.batch_size)
    eval_every = -(-steps_per_epoch // EVALS_PER_EPOCH)
    order = torch.Generator().manual_seed(seed)
    curve, epoch_seconds, trained, seen, losses = [], [], 0.0, 0, []
    n_probe = min(PROBE_TEST, ds.x_test.shape[0])

    def evaluate(last: bool):
        # The points between cost a fraction of a full test pass (EqProp's is a
        # free phase per image); the final one is on the whole test set.
        x, y = (ds.x_test, ds.y_test) if last else (ds.x_test[:n_probe], ds.y_test[:n_probe])
        curve.append({"seconds": trained, "epoch": seen / n_train, "n_test": len(y),
                      "accuracy": accuracy(learner, x, y)})

    for epoch in range(budget.epochs):
        epoch_start_trained = trained
        loss_sum, n_batches = 0.0, 0
        for xb, yb in data.batches(ds.x_train, ds.y_train, budget.batch_size, generator=order):
            t = time.perf_counter()
            optimizer.zero_grad()
            loss = learner.step(xb, yb).loss
            optimizer.step()
            loss_sum += loss.item()  # .item() syncs a GPU, so the clock below is honest
            trained += time.perf_counter() - t
            n_batches += 1
            seen += xb.shape[0]
            if n_batches % eval_every == 0 or n_batches == steps_per_epoch:
                evaluate(last=epoch == budget.epochs - 1 and n_batches == steps_per_epoch)
        epoch_seconds.append(trained - epoch_start_trained)
        losses.append(loss_sum / max(n_batches, 1))
    final = curve[-1]["accuracy"]
    timed = epoch_seconds[1:] or epoch_seconds  # the first epoch pays one-time costs
    record.update(
        test_accuracy=final,
        finite=bool(torch.isfinite(torch.tensor(losses)).all()),
        train_loss=losses[-1],
        seconds_per_epoch=sum(timed) / len(timed),
        seconds_total=trained,
        peak_memory_mb=peak_memory_mb(device),
        curve=curve,
        **{f"seconds_to_{round(100 * a)}": next((c["seconds"] for c in curve if c["accuracy"] >= a), None)
           for a in THRESHOLDS},
    )
    return record


def _row_or_error(*args) -> dict:
    try:
        return train_row(*args)
    except Exception as e:  # one rule's failure is a row of the table, not the end of the run
        rule, model_name, seed = args[:3]
        return {"rule": rule, "model": model_name, "seed": seed, "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(limit=4)}


def summarize(rows: list[dict]) -> list[dict]:
    """Per (model, rule): mean ± std over seeds, and the gap to backprop on
    the same model with its std (seed-paired: each seed's rule minus that
    seed's backprop)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["rule"]), []).append(r)
    out = []
    order = {name: i for i, name in enumerate(localgrad.rules())}
    for (model_name, rule), rs in sorted(groups.items(), key=lambda kv: (kv[0][0] != "mlp", order[kv[0][1]])):
        done = [r for r in rs if "test_accuracy" in r]
        entry = {"model": model_name, "rule": rule, "family": localgrad.rule_info(rule).family,
                 "seeds": sorted(r["seed"] for r in done)}
        refusals = [r.get("refused") or r.get("error") for r in rs if "test_accuracy" not in r]
        if refusals:
            entry["not_run"] = refusals[0]
        if done:
            acc = [r["test_accuracy"] for r in done]
            entry.update(accuracy_mean=statistics.fmean(acc), accuracy_std=_std(acc), epochs=done[0]["epochs"],
                         optimizer=done[0]["optimizer"], net=done[0]["net"],
                         seconds_per_epoch=statistics.fmean(r["seconds_per_epoch"] for r in done),
                         peak_memory_mb=max(r["peak_memory_mb"] for r in done))
            for a in THRESHOLDS:
                key = f"seconds_to_{round(100 * a)}"
                reached = [r[key] for r in done if r[key] is not None]
                entry[key] = statistics.fmean(reached) if len(reached) == len(done) else None
                entry[f"{key}_reached"] = f"{len(reached)}/{len(done)}"
            base = {r["seed"]: r["test_accuracy"] for r in groups.get((model_name, "backprop"), [])
                    if "test_accuracy" in r}
            gaps = [r["test_accuracy"] - base[r["seed"]] for r in done if r["seed"] in base]
            if gaps:
                entry.update(gap_to_backprop_mean=statistics.fmean(gaps), gap_to_backprop_std=_std(gaps))
        out.append(entry)
    return out


def _std(values: list[float]) -> float | None:
    """The sample standard deviation; None for one value (a spread of one
    seed is not zero, it is unknown)."""
    return statistics.stdev(values) if len(values) > 1 else None


def _pct(v, std=None) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.2f}" + (" ± n/a" if std is None else f" ± {100 * std:.2f}")


def print_summary(summary: list[dict]) -> None:
    rows = []
    for s in summary:
        if "accuracy_mean" not in s:
            rows.append([s["model"], s["rule"], "not run: " + s["not_run"][:70], "", "", "", "", "", ""])
            continue
        gap = "" if "gap_to_backprop_mean" not in s else _pct(s["gap_to_backprop_mean"], s["gap_to_backprop_std"])
        rows.append([s["model"], s["rule"], _pct(s["accuracy_mean"], s["accuracy_std"]), gap, str(s["epochs"]),
                     f"{s['seconds_per_epoch']:.1f}", *(_seconds(s, a) for a in THRESHOLDS),
                     f"{s['peak_memory_mb']:.0f}"])
    print_table("test accuracy % (mean ± std over seeds); times in seconds of training",
                ["model", "rule", "test acc %", "vs backprop (pt)", "epochs", "s/epoch", "to 80%", "to 85%",
                 "peak MiB"], rows)


def markdown_table(summary: list[dict]) -> str:
    """The summary as the docs' table: one line per (model, rule)."""
    lines = ["| model | rule | family | test acc. % (mean ± std) | gap to backprop (pt, ± std) | epochs | s / epoch "
             "| s to 80 % | s to 85 % | peak MiB |", "|" + "---|" * 10]
    for s in summary:
        head = f"| {s['model']} | {s['rule']} | {s['family']} |"
        if "accuracy_mean" not in s:
            lines.append(f"{head} not run: {s['not_run'].split(';')[0]} | | | | | | |")
            continue
        gap = "" if "gap_to_backprop_mean" not in s else f"{100 * s['gap_to_backprop_mean']:+.2f} ± " + \
            ("n/a" if s["gap_to_backprop_std"] is None else f"{100 * s['gap_to_backprop_std']:.2f}")
        reach = [_seconds(s, a) + ("" if s[f"seconds_to_{round(100 * a)}_reached"].startswith(str(len(s["seeds"])))
                                   else f" ({s[f'seconds_to_{round(100 * a)}_reached']} seeds)") for a in THRESHOLDS]
        lines.append(f"{head} {_pct(s['accuracy_mean'], s['accuracy_std'])} ({len(s['seeds'])} seeds) | {gap} | "
                     f"{s['epochs']} | {s['seconds_per_epoch']:.1f} | {reach[0]} | {reach[1]} | "
                     f"{s['peak_memory_mb']:.0f} |")
    return "\n".join(lines)


def _seconds(s: dict, a: float) -> str:
    key = f"seconds_to_{round(100 * a)}"
    return "-" if s[key] is None else f"{s[key]:.1f}"


def plot(rows: list[dict], path: str, title: str) -> None:
    """Test accuracy against training wall time, one line per (model, rule),
    the mean over seeds at each evaluation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in rows if "curve" in r})
    fig, axes = plt.subplots(1, len(models), figsize=(7.5 * len(models), 6), squeeze=False)
    for ax, model_name in zip(axes[0], models):
        by_rule: dict[str, list[dict]] = {}
        for r in rows:
            if r["model"] == model_name and "curve" in r:
                by_rule.setdefault(r["rule"], []).append(r)
        order = {name: i for i, name in enumerate(localgrad.rules())}
        colors = plt.get_cmap("tab20").colors
        for i, (rule, rs) in enumerate(sorted(by_rule.items(), key=lambda kv: order[kv[0]])):
            n = min(len(r["curve"]) for r in rs)
            t = [statistics.fmean(r["curve"][k]["seconds"] for r in rs) for k in range(n)]
            a = [100 * statistics.fmean(r["curve"][k]["accuracy"] for r in rs) for k in range(n)]
            label = rule if a[-1] >= 50 else f"{rule} (ends at {a[-1]:.0f} %)"
            ax.plot(t, a, label=label, marker=".", color=colors[i % 20], linestyle="-" if i < 20 else "--")
        ax.set_xscale("log")
        ax.set_ylim(50, 92)
        ax.set_xlabel("training wall time (s, log scale)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{model_name}: {title}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report_from(paths: list[str], json_path: str | None, plot_path: str | None, markdown_path: str | None) -> int:
    """--from-json: one record from several runs' rows (the first run's
    environment; each run's own kept under "runs"), summarized afresh."""
    import json

    records = [json.load(open(path)) for path in paths]
    merged = {**records[0], "rows": [r for rec in records for r in rec["rows"]],
              "budgets": {k: v for rec in records for k, v in rec["budgets"].items()},
              "runs": [{"environment": rec["environment"], "args": rec["args"]} for rec in records]}
    merged["summary"] = summarize(merged["rows"])
    print_summary(merged["summary"])
    if json_path:
        write_json(json_path, merged)
    if markdown_path:
        with open(markdown_path, "w") as f:
            f.write(markdown_table(merged["summary"]) + "\n")
    if plot_path:
        seeds = len({r["seed"] for r in merged["rows"]})
        plot(merged["rows"], plot_path, f"Fashion-MNIST, {seeds} seed(s), {merged['environment']['device_name']}")
        print(f"wrote {plot_path}")
    return 0


def main(argv=None) -> int:
    p = benchmark_parser(__doc__, repeats_default_help="3 seeds; 1 with --quick",
                         quick_help="2,000 train / 1,000 test images, 1 seed, 1 epoch per rule: a smoke run")
    p.add_argument("--models", default="mlp", help="comma-separated: mlp, cnn (default mlp)")
    p.add_argument("--rules", default=None, help="comma-separated rule names (default: every static rule)")
    p.add_argument("--epochs", type=int, default=None, help="every row's epochs (default: BUDGETS)")
    p.add_argument("--jobs", type=int, default=1, help="rows run at once, each in its own process (default 1)")
    p.add_argument("--plot", default=None, help="accuracy vs wall-clock PNG")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: 0 .. --repeats - 1); to add "
                   "seeds to a run, then merge with --from-json")
    p.add_argument("--markdown", metavar="PATH", help="also write the summary as a markdown table")
    p.add_argument("--from-json", nargs="+", metavar="PATH",
                   help="train nothing: merge the rows of these records (e.g. one per model), summarize and plot")
    args = p.parse_args(argv)
    if args.from_json:
        return report_from(args.from_json, args.json, args.plot, args.markdown)
    device, env = start(args, " (one thread per row)" if args.jobs > 1 else "")
    if args.seeds:
        seeds = [int(t) for t in args.seeds.split(",")]
    else:
        seeds = list(range(args.repeats if args.repeats is not None else 1 if args.quick else 3))
    if not seeds:
        raise SystemExit("compare_rules: --repeats must be at least 1 (it is the number of seeds)")
    rules = args.rules.split(",") if args.rules else localgrad.rules(inputs="static")
    for rule in rules:
        if localgrad.rule_info(rule).inputs != "static":
            raise SystemExit(f"compare_rules: --rules: {rule!r} learns sequences; this table is for static rules")
    models = args.models.split(",")
    for m in models:
        if m not in ("mlp", "cnn"):
            raise SystemExit(f"compare_rules: --models must name mlp or cnn, got {m!r}")
    sizes = QUICK_SIZES if args.quick else (None, None)
    jobs = []
    for model_name in models:
        for rule in rules:
            b = budget_for(rule, args.epochs, args.quick)
            jobs += [(rule, model_name, seed, b, str(device), sizes, args.threads or (1 if args.jobs > 1 else None))
                     for seed in seeds]
    # Seed by seed, so that a run stopped early holds whole seeds of the table;
    # within one, the longest rows first, so the pool does not wait on one slow row at the end.
    jobs.sort(key=lambda j: (j[2], j[0] not in SLOW_RULES, j[1] != "cnn"))
    budgets = {rule: budget_for(rule, args.epochs, args.quick)._asdict() for rule in rules}
    record = {"benchmark": "compare", "environment": env, "args": args_record(args), "dataset": "fashion-mnist",
              "n_train": sizes[0] or 60000, "n_test": sizes[1] or 10000, "budgets": budgets,
              "evals_per_epoch": EVALS_PER_EPOCH, "rows": [], "summary": []}
    rows = record["rows"]

    def finish(row: dict) -> None:
        rows.append(row)
        status = row.get("refused") or row.get("error") or f"{100 * row['test_accuracy']:.2f} %"
        print(f"[{len(rows)}/{len(jobs)}] {row['model']} {row['rule']} seed {row['seed']}: {status}", flush=True)
        if args.json:  # written after every row: a run stopped early keeps what it measured
            record["summary"] = summarize(rows)
            write_json(args.json, record)

    if args.jobs > 1:
        pool = concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"),
                                                      max_tasks_per_child=1)
        with pool:
            for future in concurrent.futures.as_completed([pool.submit(_row_or_error, *j) for j in jobs]):
                finish(future.result())
    else:
        for j in jobs:
            finish(_row_or_error(*j))
    record["summary"] = summarize(rows)
    print_summary(record["summary"])
    if args.json:
        write_json(args.json, record)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown_table(record["summary"]) + "\n")
    if args.plot:
        try:
            plot(rows, args.plot, f"Fashion-MNIST, {len(seeds)} seed(s), {env['device_name']}")
            print(f"wrote {args.plot}")
        except ImportError:
            print("matplotlib is not installed: no plot written")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
