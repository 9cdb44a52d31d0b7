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
from _memory import backprop_step, mlp_and_batch, print_rows, step_peak_bytes  # noqa: E402
import _timing as timing  # noqa: E402

import localgrad  # noqa: E402


def make_step(method, net, batch, device):
    """One training step of `method` as a closure (module level: the CPU
    memory measurement pickles it into a fresh process)."""
    model, x, y = mlp_and_batch(net, batch, device)
    if method == "backprop":
        return backprop_step(model, x, y)
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
    parser = timing.benchmark_parser(__doc__, repeats_default_help="5 (2 with --quick)")
    parser.add_argument("--net", type=timing.parse_ints, default=[784, 1024, 10])
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args(argv)
    if args.quick:
        args.net, args.batch = [32, 16, 4], 8
    repeats = args.repeats or (2 if args.quick else 5)
    device, env = timing.start(args)
    rows = []
    for method in ("backprop", "pepita", "authors' loop"):
        row = {"method": method, "net": args.net, "batch": args.batch}
        try:
            row["step_s"] = timing.time_fn(make_step(method, args.net, args.batch, str(device)), device,
                                           repeats).median_s
            row["peak_bytes"] = step_peak_bytes(make_step, (method, args.net, args.batch, str(device)), device)
        except Exception as exc:  # a row that fails says so in the table and the record
            row["error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
    print_rows(f"one training step, MLP {'-'.join(map(str, args.net))}, batch {args.batch}", rows)
    if args.json:
        timing.write_json(args.json, {"environment": env, "rows": rows})


if __name__ == "__main__":
    main()
