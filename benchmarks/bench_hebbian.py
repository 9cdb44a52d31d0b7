"""Hebbian benchmark: one layer's whole update (SoftHebb, Krotov, Oja,
Sanger), the fused `hebbian_update` op against the published step written in
eager PyTorch and against the float64 reference, side by side in one run.

    python benchmarks/bench_hebbian.py [--device cpu|cuda] [--shapes 64x784x2000,...]
        [--rules softhebb,krotov,oja,sanger] [--repeats N] [--threads N] [--json PATH] [--quick]

Eager is what the research code does per layer and batch (Journe et al.'s
SoftHebb step; Krotov & Hopfield's step): the forward GEMM, softmax (or
ranks), the winner mask and sign flip, y^T x, the y u reduction and rank-1
correction, the max-abs normalisation, the per-unit adaptive rate: about 8-10
launches. The fused op does the same maths in its GEMMs and 2-3 passes. The
floor is the op's GEMM FLOPs at the GEMM rate measured in the same run.
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing as timing  # noqa: E402

from localgrad import ops  # noqa: E402
from localgrad.reference import hebbian as ref  # noqa: E402

SETTINGS = {
    "softhebb": {"temperature": 1.0, "lr": 0.03, "lr_power": 0.5, "normalize": True},
    "krotov": {"p": 3.0, "rank": 2, "anti": 0.4, "lr": 0.02, "normalize": True},
    "oja": {"lr": 0.01},
    "sanger": {"lr": 0.01},
}


def eager_softhebb(x, w, temperature=1.0, lr=0.03, lr_power=0.5, **_):
    """The published SoftHebb step (Journe et al. 2023), eager PyTorch."""
    u = x @ w.T
    y = torch.softmax(u / temperature, dim=1)
    winner = torch.nn.functional.one_hot(u.argmax(1), w.shape[0]).to(y.dtype)
    y = y * (2 * winner - 1)
    delta = (y.T @ x - (y * u).sum(0)[:, None] * w) / x.shape[0]
    delta = delta / (delta.abs().amax() + 1e-30)
    rate = lr * ((w.norm(dim=1) - 1).abs() + 1e-10).pow(lr_power)
    return u, -rate[:, None] * delta


def eager_krotov(x, w, p=3.0, rank=2, anti=0.4, lr=0.02, **_):
    """Krotov & Hopfield's step (their 2019 training loop), eager PyTorch."""
    weff = torch.sign(w) * w.abs().pow(p - 1)
    u = x @ weff.T
    order = torch.topk(u, rank, dim=1).indices
    g = torch.zeros_like(u)
    rows = torch.arange(u.shape[0], device=u.device)
    g[rows, order[:, rank - 1]] = -anti
    g[rows, order[:, 0]] = 1.0
    delta = (g.T @ x - (g * u).sum(0)[:, None] * w) / x.shape[0]
    delta = delta / (delta.abs().amax() + 1e-30)
    return u, -lr * delta


def eager_oja(x, w, lr=0.01, **_):
    u = x @ w.T
    return u, -lr * (u.T @ x - (u * u).sum(0)[:, None] * w) / x.shape[0]


def eager_sanger(x, w, lr=0.01, **_):
    u = x @ w.T
    return u, -lr * (u.T @ x - torch.tril(u.T @ u) @ w) / x.shape[0]


EAGER = {"softhebb": eager_softhebb, "krotov": eager_krotov, "oja": eager_oja, "sanger": eager_sanger}


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    return [tuple(int(v) for v in s.split("x")) for s in text.split(",") if s]


def gemm_flops(rule: str, batch: int, n_in: int, n_out: int) -> float:
    flops = 2 * 2 * batch * n_in * n_out  # u = x W^T and y^T x
    if rule == "sanger":
        flops += 2 * batch * n_out * n_out + 2 * n_out * n_out * n_in
    return flops


def main(argv=None) -> int:
    p = timing.benchmark_parser(__doc__, repeats_default=7, repeats_default_help="7; 1 with --quick",
                                quick_help="tiny shapes, one repeat: a smoke run")
    p.add_argument("--shapes", type=parse_shapes, default=None,
                   help="batch x n_in x n_out, comma-separated (default 64x784x2000,256x784x2000,1024x75x96)")
    p.add_argument("--rules", default="softhebb,krotov,oja,sanger")
    args = p.parse_args(argv)
    device, env = timing.start(args)
    shapes = args.shapes or ([(16, 20, 30)] if args.quick else [(64, 784, 2000), (256, 784, 2000), (1024, 75, 96)])
    repeats = 1 if args.quick else args.repeats
    rules = [r for r in args.rules.split(",") if r]
    load = timing.OtherLoad()
    peaks = timing.report_peaks(device, args.quick)

    rows, table = [], []
    for batch, n_in, n_out in shapes:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(batch, n_in, generator=g).to(device)
        w = (torch.randn(n_out, n_in, generator=g) / n_in ** 0.5).to(device)
        u, grad = torch.empty(batch, n_out, device=device), torch.empty(n_out, n_in, device=device)
        for rule in rules:
            kw = SETTINGS[rule]
            fused = timing.time_fn(lambda: ops.hebbian_update(x, w, rule, u=u, grad=grad, **kw), device, repeats)
            eager = timing.time_fn(lambda: EAGER[rule](x, w, **kw), device, repeats)
            reference = timing.time_fn(lambda: ref.hebbian_update(x, w, rule, **kw), device, max(1, repeats // 2),
                                       min_repeat_s=0)
            # The eager step and the op agree (float32): a benchmark of different maths would mean nothing.
            _, eg = EAGER[rule](x, w, **kw)
            ops.hebbian_update(x, w, rule, u=u, grad=grad, **kw)
            agree = ((grad - eg).abs().max() / eg.abs().max().clamp_min(1e-30)).item()
            floor = peaks.floor_s(gemm_flops(rule, batch, n_in, n_out), 4 * (batch * n_in + 2 * n_out * n_in))
            row = {
                "rule": rule, "batch": batch, "n_in": n_in, "n_out": n_out,
                "fused": fused.as_dict(), "eager": eager.as_dict(), "reference_float64": reference.as_dict(),
                "eager_over_fused": eager.median_s / fused.median_s,
                "reference_over_fused": reference.median_s / fused.median_s,
                "fused_over_floor": fused.median_s / floor, "max_rel_diff_vs_eager": agree,
            }
            rows.append(row)
            table.append([rule, f"{batch}x{n_in}x{n_out}", timing.fmt_time(fused.median_s),
                          timing.fmt_time(eager.median_s),
                          timing.fmt_time(reference.median_s), timing.fmt_num(row["eager_over_fused"]),
                          timing.fmt_num(row["reference_over_fused"]), timing.fmt_num(row["fused_over_floor"]),
                          f"{agree:.1e}"])
    timing.print_table("one layer's update per call (median)",
                       ["rule", "batch x in x out", "fused", "eager", "reference f64", "eager / fused",
                        "ref / fused", "fused / floor", "rel diff"], table)
    timing.finish(args, load, {"benchmark": "hebbian", "environment": env, "peaks": peaks.as_dict(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
