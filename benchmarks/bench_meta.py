"""Plastic-layer benchmark (differentiable plasticity, Miconi et al. 2018):
one episode of T plastic steps and its backward (the meta-gradient of W, α,
η), the fused ops through PlasticEpisode (the default backward reading the
stored traces, and store_traces=False recomputing them, where its error
estimate lets it run) against autograd through the eager reference, side by
side in one run: time and the memory held for the backward, against T.

    python benchmarks/bench_meta.py [--device cpu|cuda] [--steps 10,50,200] [--sizes 64,128,256]
        [--batch 16] [--mode recurrent|feedforward] [--repeats N] [--threads N] [--json PATH] [--quick]

Eager is autograd through the reference episode (localgrad/reference/
meta.py), as the published code (Miconi et al.'s PyTorch) does it: (batch,
N, N) temporaries every step (α ⊙ H, the outer product, the new H), each
kept by autograd for BPTT, so its memory grows with T. "held"
is the bytes of the tensors autograd saves for the backward (each storage
counted once), measured with saved-tensor hooks; the fused op keeps x, W, α,
the outputs, H_T and the T traces (not the traces with store_traces=False).
The floor is the default's traffic (H read, H and its stored copy written
once per step forward; the stored H and G read, G written, in the backward)
at the copy bandwidth measured in the same run, or the FLOPs at the measured
matmul rate, whichever is longer.
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing as timing  # noqa: E402

from localgrad.activations import Activation  # noqa: E402
from localgrad.meta.plastic import RECOMPUTE_TOLERANCE, PlasticEpisode, recompute_error_estimate  # noqa: E402
from localgrad.reference import meta as ref  # noqa: E402

TANH = int(Activation.TANH)


class SavedBytes:
    """Bytes of the tensors autograd saves for the backward inside the block,
    each storage once."""

    def __init__(self):
        self.storages: dict[int, int] = {}

    def pack(self, t):
        s = t.untyped_storage()
        self.storages[s.data_ptr()] = s.nbytes()
        return t

    def __enter__(self):
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)

    @property
    def total(self) -> int:
        return sum(self.storages.values())


def make_inputs(steps, batch, n, recurrent, device, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, s=1.0):
        return (s * torch.randn(*shape, generator=g)).to(device)

    return dict(u=rand(steps, batch, n), x=None if recurrent else rand(steps, batch, n),
                weight=rand(n, n, s=0.3 / n ** 0.5), alpha=rand(n, n, s=0.3 / n ** 0.5),
                h0=torch.zeros(batch, n, n, device=device))


def episode_fn(kind, inputs, eta):
    """A closure running one forward + backward; returns (closure, saved bytes of one forward)."""
    leaves = {k: (v.clone().requires_grad_() if v is not None else None) for k, v in inputs.items()}
    eta_t = torch.tensor(eta, device=inputs["u"].device, requires_grad=True)

    def forward():
        if kind == "eager":
            return ref.plastic_episode(leaves["u"], leaves["x"], leaves["weight"], leaves["alpha"], eta_t,
                                       leaves["h0"], TANH)
        return PlasticEpisode.apply(leaves["u"], leaves["x"], leaves["weight"], leaves["alpha"], eta_t,
                                    leaves["h0"], TANH, kind != "fused, recomputed")

    def run():
        ys, h = forward()
        (ys.sum() + h.sum()).backward()

    with SavedBytes() as saved:
        ys, h = forward()
    held = saved.total
    del ys, h
    return run, held


def floor_flops_bytes(steps, batch, n):
    """Per episode: forward ~ 8 B N² flops a step (plastic current, trace
    update, W p), backward ~ 16 B N²; the traces' traffic: forward reads H
    and writes it and its stored copy, backward reads that copy and G and
    writes G (float32)."""
    per_step = batch * n * n
    return steps * 24 * per_step, steps * 4 * (3 + 3) * per_step


def main(argv=None) -> int:
    p = timing.benchmark_parser(__doc__, repeats_default=3, repeats_default_help="3; 1 with --quick",
                                quick_help="tiny shapes, one repeat: a smoke run")
    p.add_argument("--steps", type=timing.parse_ints, default=None, help="episode lengths T (default 10,50,200)")
    p.add_argument("--sizes", type=timing.parse_ints, default=None, help="N = n_in = n_out (default 64,128,256)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--mode", choices=("recurrent", "feedforward"), default="recurrent")
    p.add_argument("--eta", type=float, default=0.1)
    p.add_argument("--eager-limit-gb", type=float, default=3.0,
                   help="skip the eager run where autograd would hold more than this")
    args = p.parse_args(argv)
    steps_list = args.steps or ([3, 6] if args.quick else [10, 50, 200])
    sizes = args.sizes or ([8] if args.quick else [64, 128, 256])
    batch = 2 if args.quick else args.batch
    repeats = 1 if args.quick else args.repeats
    recurrent = args.mode == "recurrent"
    device, env = timing.start(args, f"; {args.mode} tanh layer, batch {batch}, eta {args.eta}, float32")
    load = timing.OtherLoad()
    peaks = timing.report_peaks(device, args.quick)

    rows, table = [], []
    for n in sizes:
        for steps in steps_list:
            inputs = make_inputs(steps, batch, n, recurrent, device)
            # Eager keeps about five (batch, N, N) tensors a step for its backward.
            eager_estimate = 5 * 4 * steps * batch * n * n
            row = {"n": n, "steps": steps, "batch": batch, "mode": args.mode}
            _, recompute_error = recompute_error_estimate(args.eta, steps, torch.float32)
            for kind in ("fused", "fused, recomputed", "eager"):
                if kind == "eager" and eager_estimate > args.eager_limit_gb * 2**30:
                    row[kind] = {"skipped": f"would hold ~{eager_estimate / 2**30:.1f} GiB"}
                    continue
                if kind == "fused, recomputed" and recompute_error > RECOMPUTE_TOLERANCE[torch.float32]:
                    row[kind] = {"skipped": f"refused: estimated error {recompute_error:.2g}"}
                    continue
                run, held = episode_fn(kind, inputs, args.eta)
                measured = timing.time_fn(run, device, repeats, warmup=1, min_repeat_s=0)
                timing.synchronize(device)
                row[kind] = {"time": measured.as_dict(), "held_bytes": held}
            flops, nbytes = floor_flops_bytes(steps, batch, n)
            floor = peaks.floor_s(flops, nbytes)
            fused_t = row["fused"]["time"]["median_s"]
            eager_t = row["eager"]["time"]["median_s"] if "time" in row["eager"] else None
            row["floor_s"] = floor
            row["eager_over_fused"] = eager_t / fused_t if eager_t else None
            rows.append(row)

            def held(kind):
                return row[kind]["held_bytes"] / 2**20 if "held_bytes" in row[kind] else None

            def median(kind):
                return row[kind]["time"]["median_s"] if "time" in row[kind] else None

            notes = "; ".join(f"{kind}: {row[kind]['skipped']}" for kind in ("fused, recomputed", "eager")
                              if "skipped" in row[kind])
            table.append([f"{n}", f"{steps}", timing.fmt_time(fused_t), timing.fmt_time(median("fused, recomputed")),
                          timing.fmt_time(eager_t), timing.fmt_num(row["eager_over_fused"]),
                          timing.fmt_num(held("fused")),
                          timing.fmt_num(held("fused, recomputed")), timing.fmt_num(held("eager")),
                          timing.fmt_num(fused_t / floor),
                          notes])
    title = f"one episode + its backward ({args.mode}, batch {batch}; median; held = MiB saved for the backward)"
    timing.print_table(title,
                       ["N", "T", "fused", "fused recompute", "eager", "eager / fused", "held fused", "held recompute",
                        "held eager", "fused / floor", "note"], table)
    timing.finish(args, load, {"benchmark": "meta", "environment": env, "peaks": peaks.as_dict(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
