"""Predictive-coding benchmark: the fused inference, then a whole training
step against backprop.

    python benchmarks/bench_predictive_coding.py [--device cpu|cuda]
        [--batches 64,256] [--steps 0,20,100] [--nets 784-256-256-10]
        [--repeats N] [--threads N] [--json PATH] [--quick]

Part 1 times T inference steps (IL, ReLU MLP, cross-entropy output energy)
of `predictive_coding_infer` against (a) the eager loop PyTorch PC libraries
run (Bogacz-Group/PredictiveCoding style: each step a forward pass of every
layer's prediction, the energy summed, autograd's backward for dF/dx, then
the state step) and (b) localgrad's reference (the same maths written out by
hand, no autograd); the CUDA-graph capture of (a) on a GPU is not written
yet. T = 0 in
--steps means T = L + 1. The floor is the time of the same products at the
measured GEMM rate (each step: L forward and L-1 backward products).

Part 2 times one training step (inference, the update in .grad, Adam) of
PredictiveCoding (IL with T = 20, Z-IL) against backprop on the same MLP.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing as timing  # noqa: E402

from localgrad import ops  # noqa: E402
from localgrad.activations import Activation  # noqa: E402
from localgrad.predictive_coding import PredictiveCoding  # noqa: E402
from localgrad.reference import predictive_coding as ref  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = timing.benchmark_parser(__doc__, repeats_default_help="5")
    p.add_argument("--batches", type=timing.parse_ints, default=None, help="comma-separated (default 64,256)")
    p.add_argument("--steps", type=timing.parse_ints, default=None,
                   help="inference steps T; 0 = L+1 (default 0,20,100)")
    p.add_argument("--nets", type=timing.parse_nets, default=None,
                   help="widths joined by '-', comma-separated (default 784-256-256-10,784-128-128-128-128-10)")
    args = p.parse_args(argv)
    if args.quick:
        args.batches = args.batches or [8]
        args.steps = args.steps or [0, 5]
        args.nets = args.nets or [[32, 24, 4], [32, 16, 16, 4]]
        args.repeats = args.repeats or 2
    args.batches = args.batches or [64, 256]
    args.steps = args.steps or [0, 20, 100]
    args.nets = args.nets or [[784, 256, 256, 10], [784, 128, 128, 128, 128, 10]]
    args.repeats = args.repeats or 5
    return args


def net_name(sizes: list[int]) -> str:
    return "-".join(map(str, sizes))


def make_mlp(sizes: list[int], device) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), *timing.relu_mlp(sizes)).to(device)


def make_inputs(sizes, batch, device):
    model = make_mlp(sizes, device)
    lins = [m for m in model if isinstance(m, nn.Linear)]
    weights = [m.weight.detach() for m in lins]
    biases = [m.bias.detach() for m in lins]
    kinds = [int(Activation.IDENTITY)] + [int(Activation.RELU)] * (len(lins) - 1)
    slopes = [0.0] * len(lins)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(batch, sizes[0], generator=g).to(device)
    y = torch.randint(0, sizes[-1], (batch,), generator=g).to(device)
    target = F.one_hot(y, sizes[-1]).float()
    ff = ref.forward(x, weights, biases, kinds, slopes)
    return model, x, y, weights, biases, kinds, slopes, target, [a.contiguous() for a in ff[:-1]]


def eager_autograd(x, weights, biases, states, target, steps, gamma):
    """What PyTorch PC libraries do per step: predictions of every layer,
    the energy, autograd for dF/dx, the state step."""
    a = [s.clone().requires_grad_(True) for s in states]
    for _ in range(steps):
        nodes = [x, *a]
        energy = 0.0
        for l in range(len(weights)):
            inp = nodes[l] if l == 0 else torch.relu(nodes[l])
            mu = F.linear(inp, weights[l], biases[l])
            if l < len(weights) - 1:
                energy = energy + 0.5 * (nodes[l + 1] - mu).pow(2).sum()
            else:
                energy = energy + F.cross_entropy(mu, target.argmax(1), reduction="sum")
        grads = torch.autograd.grad(energy, a)
        with torch.no_grad():
            for s, g in zip(a, grads):
                s.sub_(gamma * g)
    return [s.detach() for s in a]


def infer_flops(sizes, batch, steps):
    pairs = list(zip(sizes[:-1], sizes[1:]))
    forward = sum(2 * a * b for a, b in pairs)
    backward = sum(2 * a * b for a, b in pairs[1:])
    return batch * (steps * (forward + backward) + forward)


def part1(args, device, peaks, results):
    rows = []
    for sizes in args.nets:
        L = len(sizes) - 1
        for batch in args.batches:
            for steps in args.steps:
                T = L + 1 if steps == 0 else steps
                model, x, y, weights, biases, kinds, slopes, target, ff = make_inputs(sizes, batch, device)
                states = [s.clone() for s in ff]
                errors = [x.new_empty(batch, w.shape[0]) for w in weights]

                def fused():
                    for s, f in zip(states, ff):
                        s.copy_(f)
                    ops.predictive_coding_infer(x, weights, biases, states, target, kinds, slopes, variant="il",
                                                loss="ce", steps=T, gamma=0.1, errors=errors)

                def eager():
                    with torch.enable_grad():
                        eager_autograd(x, weights, biases, ff, target, T, 0.1)

                def reference():
                    ref.predictive_coding_infer(x, weights, biases, ff, target, kinds, slopes, ref.IL, ref.CE,
                                                1.0, T, 0.1, 0.0)

                t_fused = timing.time_fn(fused, device, args.repeats)
                t_eager = timing.time_fn(eager, device, args.repeats)
                t_ref = timing.time_fn(reference, device, args.repeats)
                floor = peaks.floor_s(infer_flops(sizes, batch, T), 0)
                row = dict(net=net_name(sizes), batch=batch, steps=T, fused_s=t_fused.min_s,
                           eager_autograd_s=t_eager.min_s, reference_s=t_ref.min_s, floor_s=floor)
                results.append(row)
                rows.append([net_name(sizes), batch, T, timing.fmt_time(t_fused.min_s), timing.fmt_time(t_eager.min_s),
                             timing.fmt_time(t_ref.min_s), timing.fmt_num(t_eager.min_s / t_fused.min_s),
                             timing.fmt_num(t_ref.min_s / t_fused.min_s), timing.fmt_num(floor / t_fused.min_s, 2)])
    timing.print_table("Part 1: IL inference, T steps (ReLU, cross-entropy), best of the repeats per call",
                       ["net", "batch", "T", "fused", "(a) eager autograd", "(b) reference", "(a)/fused", "(b)/fused",
                        "floor/fused"], rows)


def part2(args, device, results):
    rows = []
    for sizes in args.nets:
        for batch in args.batches:
            model, x, y, *_ = make_inputs(sizes, batch, device)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)

            def backprop():
                opt.zero_grad()
                F.cross_entropy(model(x), y).backward()
                opt.step()

            t_bp = timing.time_fn(backprop, device, args.repeats)
            row = [net_name(sizes), batch, "backprop", timing.fmt_time(t_bp.min_s), "1"]
            rows.append(row)
            for variant, steps in (("zil", None), ("il", 20), ("ipc", 20)):
                learner = PredictiveCoding(model, variant=variant, steps=steps, loss="ce")

                def pc_step():
                    opt.zero_grad()
                    learner.step(x, y)
                    opt.step()

                t = timing.time_fn(pc_step, device, args.repeats)
                results.append(dict(net=net_name(sizes), batch=batch, rule=f"pc-{variant}", steps=learner.steps,
                                    step_s=t.min_s, backprop_s=t_bp.min_s))
                rows.append([net_name(sizes), batch, f"pc-{variant} (T={learner.steps})", timing.fmt_time(t.min_s),
                             timing.fmt_num(t.min_s / t_bp.min_s)])
    timing.print_table("Part 2: one training step (Adam), best of the repeats", ["net", "batch", "rule", "step",
                                                                                 "x backprop"], rows)


def main(argv=None) -> int:
    args = parse_args(argv)
    device, env = timing.start(args)
    load = timing.OtherLoad()
    peaks = timing.report_peaks(device, args.quick)
    results1, results2 = [], []
    with torch.no_grad():
        part1(args, device, peaks, results1)
    part2(args, device, results2)
    other = load.fraction()
    if other is not None:
        print(f"\nother processes used {100 * other:.0f}% of the CPUs' time during the run")
    if args.json:
        timing.write_json(args.json, {"environment": env, "peaks": peaks.as_dict(), "rows": results1 + results2,
                                      "inference": results1,
                                      "training_step": results2, "other_load": other})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
