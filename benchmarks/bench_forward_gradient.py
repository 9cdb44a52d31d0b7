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


def make_step(method, net, batch, tangents, device):
    """A closure running one training step of `method` (module level: the
    CPU memory measurement pickles it into a fresh process)."""
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
    parser = benchmark_parser(__doc__, repeats_default_help="5 (2 with --quick)")
    parser.add_argument("--net", type=parse_ints, default=[784, 1024, 1024, 10])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tangents", type=parse_ints, default=[1, 8])
    args = parser.parse_args(argv)
    if args.quick:
        args.net, args.batch, args.tangents = [32, 16, 4], 8, [1, 2]
    repeats = args.repeats or (2 if args.quick else 5)
    device, env = start(args)
    rows = []
    methods = [("backprop", 1)] + [(m, k) for k in args.tangents
                                   for m in ("fg-weight", "fg-activity", "fg-local", "eager fg-activity")]
    for method, k in methods:
        row = {"method": method, "tangents": k, "net": args.net, "batch": args.batch}
        try:
            step = make_step(method, args.net, args.batch, k, str(device))
            row["step_s"] = time_fn(step, device, repeats).median_s
            row["peak_bytes"] = step_peak_bytes(make_step, (method, args.net, args.batch, k, str(device)), device)
        except Exception as exc:  # a row that fails says so in the table and the record
            row["error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
    base = rows[0]
    print_table(f"one training step, MLP {'-'.join(map(str, args.net))}, batch {args.batch}",
                ["method", "K", "ms / step", "x backprop", "peak MiB", "x backprop mem"],
                [[r["method"], str(r["tangents"]), f"{1e3 * r['step_s']:.2f}" if "step_s" in r else r.get("error", ""),
                  f"{r['step_s'] / base['step_s']:.2f}" if "step_s" in r else "",
                  f"{r['peak_bytes'] / 2**20:.2f}" if "peak_bytes" in r else "",
                  f"{r['peak_bytes'] / max(base['peak_bytes'], 1):.2f}" if "peak_bytes" in r else ""] for r in rows])
    if args.json:
        write_json(args.json, {"environment": env, "rows": rows})


if __name__ == "__main__":
    main()
