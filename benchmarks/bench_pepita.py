"""PEPITA benchmark: one training step's time and transient peak memory,
the learner (two no-grad forward passes and the per-layer outer products)
against backprop and against the authors' loop (forward hooks collecting
each layer's activity, the second pass on x + F e, the updates from the
collected lists), on a stock MLP.

    python benchmarks/bench_pepita.py [--device cpu|cuda] [--net 784,1024,10] [--batch 64]
        [--repeats N] [--threads N] [--json PATH] [--quick]

There is no fused PEPITA op yet: both rows are eager; the difference is
the hooks and the copies the authors' loop makes of every activity.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _memory import step_peak_bytes  # noqa: E402
from _timing import benchmark_parser, parse_ints, print_table, start, time_fn, write_json  # noqa: E402

import localgrad  # noqa: E402


def make_mlp(net):
    layers = []
    for i, (a, b) in enumerate(zip(net[:-1], net[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(net) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def make_step(method, net, batch, device):
    """One training step of `method` as a closure (module level: the CPU
    memory measurement pickles it into a fresh process)."""
    torch.manual_seed(0)
    device = torch.device(device)
    model = make_mlp(net).to(device)
    x = torch.randn(batch, net[0], device=device)
    y = torch.randint(0, net[-1], (batch,), device=device)
    if method == "backprop":
        def step():
            model.zero_grad(set_to_none=False)
            F.cross_entropy(model(x), y).backward()
        return step
    learner = localgrad.learner(model, "pepita")
    if method == "pepita":
        def step():
            model.zero_grad(set_to_none=False)
            learner.step(x, y)
        return step
    return _authors_loop(model, learner.feedback(), x, y)


def _authors_loop(model, feedback, x, y):
    """The structure of the authors' code: hooks store a copy of every
    block's output, the updates read the two stored lists."""
    blocks, current = [], []
    for m in model:
        current.append(m)
        if not isinstance(m, nn.Linear) or m is model[-1]:
            if isinstance(m, nn.Linear) or len(current) > 1:
                blocks.append(nn.Sequential(*current))
                current = []
    store = [None] * len(blocks)
    for i, b in enumerate(blocks):
        b.register_forward_hook(lambda mod, inp, out, i=i: store.__setitem__(i, out.detach().clone()))

    @torch.no_grad()
    def step():
        h = x
        for b in blocks:
            h = b(h)
        first = list(store)
        e = torch.softmax(h, 1) - F.one_hot(y, h.shape[1]).to(h)
        h_mod = x + e @ feedback.T
        h = h_mod
        for b in blocks:
            h = b(h)
        second = list(store)
        for l, b in enumerate(blocks):
            inp = h_mod if l == 0 else second[l - 1]
            delta = e if l == len(blocks) - 1 else first[l] - second[l]
            b[0].weight.grad = delta.T @ inp / x.shape[0]
            b[0].bias.grad = delta.mean(0)
    return step


def main(argv=None):
    parser = benchmark_parser(__doc__, repeats_default_help="5 (2 with --quick)")
    parser.add_argument("--net", type=parse_ints, default=[784, 1024, 10])
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args(argv)
    if args.quick:
        args.net, args.batch = [32, 16, 4], 8
    repeats = args.repeats or (2 if args.quick else 5)
    device, env = start(args)
    rows = []
    for method in ("backprop", "pepita", "authors' loop"):
        row = {"method": method, "net": args.net, "batch": args.batch}
        try:
            row["step_s"] = time_fn(make_step(method, args.net, args.batch, str(device)), device, repeats).median_s
            row["peak_bytes"] = step_peak_bytes(make_step, (method, args.net, args.batch, str(device)), device)
        except Exception as exc:  # a row that fails says so in the table and the record
            row["error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
    base = rows[0]
    print_table(f"one training step, MLP {'-'.join(map(str, args.net))}, batch {args.batch}",
                ["method", "ms / step", "x backprop", "peak MiB", "x backprop mem"],
                [[r["method"], f"{1e3 * r['step_s']:.2f}" if "step_s" in r else r.get("error", ""),
                  f"{r['step_s'] / base['step_s']:.2f}" if "step_s" in r else "",
                  f"{r['peak_bytes'] / 2**20:.2f}" if "peak_bytes" in r else "",
                  f"{r['peak_bytes'] / max(base['peak_bytes'], 1):.2f}" if "peak_bytes" in r else ""] for r in rows])
    if args.json:
        write_json(args.json, {"environment": env, "rows": rows})


if __name__ == "__main__":
    main()
