"""A spiking sequence task for the online learners: MNIST-1D read as 40 time
steps, classified by an ALIF (or LIF) network trained with e-prop (symmetric
or random feedback) or surrogate-gradient BPTT.

Encoding: at each step the sequence's value x_t drives `channels` input
neurons as currents through Gaussian tuning curves (population coding),
current_c = exp(-(x_t - mu_c)^2 / (2 sigma^2)), mu_c evenly spaced over
[-3, 3]. Loss: cross-entropy at the last `loss_steps` steps; prediction: the
class with the largest readout summed over those steps. Chance is 10 %.

compare(...) returns one row per rule (a dict): test and train accuracy, time
per step, and memory per sample (e-prop: its state and traces; BPTT: the
tensors autograd saved for backward over the sequence).
"""

from __future__ import annotations

import statistics
import time

import torch

from localgrad.online.eprop_spiking import SpikingBPTT, SpikingEProp, step_losses
from localgrad.online.lif import ALIF, LIF
from localgrad.online.memory import saved_bytes

ROWS = ("eprop_symmetric", "eprop_random", "bptt")


def encode(x: torch.Tensor, channels: int) -> torch.Tensor:
    """(batch, T) sequences -> (T, batch, channels) input currents."""
    mu = torch.linspace(-3, 3, channels, dtype=x.dtype, device=x.device)
    sigma = 6 / (channels - 1)
    return torch.exp(-((x.T.unsqueeze(-1) - mu) ** 2) / (2 * sigma**2))


def _targets(y: torch.Tensor, steps: int, loss_steps: int) -> torch.Tensor:
    t = torch.full((steps, y.shape[0]), -1, dtype=torch.long, device=y.device)
    t[steps - loss_steps :] = y
    return t


def _make_learner(rule: str, model, seed: int):
    if rule == "bptt":
        return SpikingBPTT(model, loss="ce")
    return SpikingEProp(model, feedback=rule.split("_")[1], loss="ce", seed=seed)


def evaluate(model, x: torch.Tensor, y: torch.Tensor, channels: int, loss_steps: int, batch_size: int = 500) -> float:
    correct = 0
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            xb = encode(x[start : start + batch_size], channels)
            ys, _, _ = model(xb)
            correct += (ys[-loss_steps:].sum(0).argmax(1) == y[start : start + batch_size]).sum().item()
    return correct / max(x.shape[0], 1)


def compare(
    rules=ROWS,
    hidden: int = 64,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 3e-3,
    channels: int = 16,
    loss_steps: int = 10,
    adaptive: bool = True,
    n_train: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
) -> list[dict]:
    """Trains one network per rule (same initial weights) on MNIST-1D and
    returns rows: rule, neuron, hidden, test_acc, train_acc, chance,
    ms_per_step (training: the median batch's time over its time steps), bytes_per_sample."""
    from localgrad.data import batches, mnist1d

    data = mnist1d()
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    if n_train is not None:
        x_train, y_train = x_train[:n_train], y_train[:n_train]
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    steps = x_train.shape[1]
    cls = ALIF if adaptive else LIF
    rows = []
    for rule in rules:
        torch.manual_seed(seed)
        model = cls(channels, hidden, data.n_classes, tau_m=20.0, tau_out=10.0, device=device)
        learner = _make_learner(rule, model, seed)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(seed)
        batch_times = []
        for epoch in range(epochs):
            for xb, yb in batches(x_train, y_train, batch_size, generator=gen):
                xs, targets = encode(xb, channels), _targets(yb, steps, loss_steps)
                t0 = time.perf_counter()
                opt.zero_grad()
                learner.reset(xb.shape[0])
                learner.run(xs, targets)
                opt.step()
                with torch.no_grad():
                    model.weight_rec.mul_(model.rec_mask)
                if device != "cpu":
                    torch.cuda.synchronize()
                batch_times.append(time.perf_counter() - t0)
            if progress:
                acc = evaluate(model, x_test, y_test, channels, loss_steps)
                print(f"{rule}: epoch {epoch + 1} test accuracy {acc:.3f}", flush=True)
        xs = encode(x_train[:batch_size], channels)
        if rule == "bptt":
            targets = _targets(y_train[:batch_size], steps, loss_steps)
            mem = saved_bytes(lambda: step_losses(model(xs)[0], targets, "ce").sum().backward(),
                              model.parameters()) / xs.shape[1]
            model.zero_grad()
        else:
            learner.reset(xs.shape[1])
            mem = sum(t.numel() * t.element_size() for t in learner.state.values()) / xs.shape[1]
        rows.append({
            "rule": rule,
            "neuron": cls.__name__,
            "hidden": hidden,
            "test_acc": evaluate(model, x_test, y_test, channels, loss_steps),
            "train_acc": evaluate(model, x_train, y_train, channels, loss_steps),
            "chance": 1 / data.n_classes,
            # The median batch: on a shared machine, a mean would mostly time the neighbours.
            "ms_per_step": 1e3 * statistics.median(batch_times) / steps,
            "bytes_per_sample": mem,
        })  # fmt: skip
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = ["| rule | neuron | hidden | test acc | train acc | chance | ms / step | memory / sample |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['rule']} | {r['neuron']} | {r['hidden']} | {r['test_acc']:.3f} | {r['train_acc']:.3f} | "
            f"{r['chance']:.2f} | {r['ms_per_step']:.3f} | {r['bytes_per_sample'] / 1024:.1f} KiB |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--lif", action="store_true", help="LIF instead of ALIF neurons")
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args()
    print(format_rows(compare(epochs=args.epochs, hidden=args.hidden, adaptive=not args.lif, lr=args.lr, progress=True)))
