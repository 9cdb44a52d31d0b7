"""Forward-gradient benchmark: one training step's time and transient peak
memory for fg-weight, fg-activity and fg-local (the learners: K tangents
vectorised by vmap over torch.func.jvp) against backprop and against the
papers' loop written eagerly (one torch.autograd.forward_ad pass per
tangent, as Baydin et al.'s and Ren et al.'s code do), on a stock MLP.

    python benchmarks/bench_forward_gradient.py [--device cpu|cuda] [--net 784,1024,1024,10]
        [--batch 64] [--tangents 1,8] [--repeats N] [--threads N] [--json PATH] [--quick]

No fused op: a step is, per layer, the jvp's forward GEMMs and the
estimate's two small GEMMs (dz^T h), which ATen already runs as GEMMs; the
rows below say what vmap over K saves against the loop, and the memory
column what no backward pass saves against backprop.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _memory import backprop_step, mlp_and_batch, print_rows, step_peak_bytes  # noqa: E402
import _timing as timing  # noqa: E402

import localgrad  # noqa: E402


def make_step(method, net, batch, tangents, device):
    """A closure running one training step of `method` (module level: the
    CPU memory measurement pickles it into a fresh process)."""
    model, x, y = mlp_and_batch(net, batch, device)
    if method == "backprop":
        return backprop_step(model, x, y)
    if method.startswith("eager "):
        return _eager_activity(model, x, y, tangents)
    learner = localgrad.learner(model, method, tangents=tangents)

    def step():
        model.zero_grad(set_to_none=False)
        learner.step(x, y)
    return step


def _eager_activity(model, x, y, tangents):
    """Ren et al.'s activity perturbation as a loop: one dual-number forward
    pass per tangent, the estimate accumulated layer by layer."""
    linears = [m for m in model if isinstance(m, nn.Linear)]

    for p in model.parameters():
        p.grad = torch.zeros_like(p)

    @torch.no_grad()
    def step():
        model.zero_grad(set_to_none=False)
        for _ in range(tangents):
            us, inputs = [], []
            with fwAD.dual_level():
                h = x
                for m in model:
                    if isinstance(m, nn.Linear):
                        inputs.append(fwAD.unpack_dual(h).primal)
                        u = torch.randn(x.shape[0], m.out_features, device=x.device)
                        us.append(u)
                        h = m(h) + fwAD.make_dual(torch.zeros_like(u), u)
                    else:
                        h = m(h)
                d = fwAD.unpack_dual(F.cross_entropy(h, y, reduction="none")).tangent
            for layer, u, inp in zip(linears, us, inputs):
                dz = d[:, None] * u / (x.shape[0] * tangents)
                layer.weight.grad.add_(dz.T @ inp)
                layer.bias.grad.add_(dz.sum(0))
    return step


def main(argv=None):
    parser = timing.benchmark_parser(__doc__, repeats_default_help="5 (2 with --quick)")
    parser.add_argument("--net", type=timing.parse_ints, default=[784, 1024, 1024, 10])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tangents", type=timing.parse_ints, default=[1, 8])
    args = parser.parse_args(argv)
    if args.quick:
        args.net, args.batch, args.tangents = [32, 16, 4], 8, [1, 2]
    repeats = args.repeats or (2 if args.quick else 5)
    device, env = timing.start(args)
    rows = []
    methods = [("backprop", 1)] + [(m, k) for k in args.tangents
                                   for m in ("fg-weight", "fg-activity", "fg-local", "eager fg-activity")]
    for method, k in methods:
        row = {"method": method, "tangents": k, "net": args.net, "batch": args.batch}
        try:
            step = make_step(method, args.net, args.batch, k, str(device))
            row["step_s"] = timing.time_fn(step, device, repeats).median_s
            row["peak_bytes"] = step_peak_bytes(make_step, (method, args.net, args.batch, k, str(device)), device)
        except Exception as exc:  # a row that fails says so in the table and the record
            row["error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
    print_rows(f"one training step, MLP {'-'.join(map(str, args.net))}, batch {args.batch}", rows,
               (("K", "tangents"),))
    if args.json:
        timing.write_json(args.json, {"environment": env, "rows": rows})


if __name__ == "__main__":
    main()
