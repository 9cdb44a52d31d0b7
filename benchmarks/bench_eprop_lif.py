"""Spiking e-prop benchmark: the fused chunk op against the eager reference
and surrogate-gradient BPTT, on LIF or ALIF networks.

    python benchmarks/bench_eprop_lif.py [--device cpu|cuda] [--hidden 32,64,128,256]
        [--batches 1,32,256] [--steps 20] [--lif] [--repeats N] [--threads N]
        [--json PATH] [--quick]

For every hidden size and batch it times one learner call over a chunk of
--steps time steps (run) and over one step (step), for: SpikingEProp with the
fused op, SpikingEProp running the eager pure-PyTorch reference, and
SpikingBPTT (autograd forward and backward through the chunk). Each row also
gives the fused op's floor on this device (its synapse FLOPs at the measured
GEMM rate, or its per-synapse trace traffic at the measured copy bandwidth,
whichever is longer) and the memory per sample: e-prop's state and traces
(independent of the sequence length), BPTT's tensors saved for backward over
the chunk (growing with it).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing as timing  # noqa: E402

from localgrad.online import ALIF, LIF, SpikingBPTT, SpikingEProp  # noqa: E402
from localgrad.online.eprop_spiking import step_losses  # noqa: E402
from localgrad.online.memory import saved_bytes  # noqa: E402

N_IN, N_OUT = 40, 10


def parse_args(argv=None) -> argparse.Namespace:
    p = timing.benchmark_parser(__doc__, repeats_default_help="3; 1 with --quick",
                                quick_help="a smoke run: tiny sizes, one repeat")
    p.add_argument("--hidden", type=timing.parse_ints, default=None, help="comma-separated (default 32,64,128,256)")
    p.add_argument("--batches", type=timing.parse_ints, default=None, help="comma-separated (default 1,32,256)")
    p.add_argument("--steps", type=int, default=None, help="time steps per chunk (default 20)")
    p.add_argument("--lif", action="store_true", help="LIF neurons (default ALIF)")
    args = p.parse_args(argv)
    if args.hidden is None:
        args.hidden = [16] if args.quick else [32, 64, 128, 256]
    if args.batches is None:
        args.batches = [1, 3] if args.quick else [1, 32, 256]
    if args.steps is None:
        args.steps = 3 if args.quick else 20
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    return args


def synapse_cost(hidden: int, adaptive: bool, elem: int) -> tuple[float, float]:
    """FLOPs and minimum bytes per sample and step of the fused op: every
    synapse updates its filtered trace (and, ALIF, its adaptive trace and the
    eligibility) and adds to its weight update; each trace is read and
    written once."""
    synapses = hidden * (N_IN + hidden)
    flops = synapses * (10 if adaptive else 5)
    nbytes = synapses * elem * (4 if adaptive else 2)
    return flops, nbytes


def bench_config(args, device, peaks, hidden, batch) -> list[dict]:
    cls = LIF if args.lif else ALIF
    torch.manual_seed(0)
    model = cls(N_IN, hidden, N_OUT, device=device)
    xs = torch.rand(args.steps, batch, N_IN, device=device) * 2
    targets = torch.randn(args.steps, batch, N_OUT, device=device)
    flops, nbytes = synapse_cost(hidden, model.adaptive, 4)
    floor_step = peaks.floor_s(flops * batch, nbytes * batch)
    kw = {"device": device, "repeats": args.repeats, "warmup": args.warmup, "min_repeat_s": args.min_repeat_s}
    learners = {
        "e-prop fused op": SpikingEProp(model, use_kernel=True),
        "e-prop eager reference": SpikingEProp(model, use_kernel=False),
        "surrogate BPTT": SpikingBPTT(model),
    }
    rows = []
    for name, learner in learners.items():
        learner.reset(batch)

        def chunk(learner=learner):
            learner.run(xs, targets)

        def one_step(learner=learner):
            learner.step(xs[0], targets[0])

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_chunk = timing.time_fn(chunk, **kw)
            t_step = timing.time_fn(one_step, **kw)
        if name == "surrogate BPTT":
            run = lambda: step_losses(model(xs)[0], targets, "mse").sum().backward()  # noqa: E731
            mem = saved_bytes(run, model.parameters()) / max(batch, 1)
        else:
            mem = sum(t.numel() * t.element_size() for t in learner.state.values()) / max(batch, 1)
        model.zero_grad()
        rows.append({
            "hidden": hidden, "batch": batch, "steps": args.steps, "neuron": cls.__name__,
            "implementation": name, "chunk_s": t_chunk.median_s, "chunk_min_s": t_chunk.min_s,
            "step_s": t_step.median_s, "per_step_in_chunk_s": t_chunk.median_s / args.steps,
            "floor_step_s": floor_step, "bytes_per_sample": mem,
        })  # fmt: skip
    fused = rows[0]
    for r in rows:
        r["chunk_vs_fused"] = r["chunk_s"] / fused["chunk_s"]
        r["x_floor"] = r["per_step_in_chunk_s"] / floor_step
    return rows


def print_rows(rows, steps, other_load):
    table = []
    for r in rows:
        table.append([
            r["implementation"], str(r["hidden"]), str(r["batch"]), timing.fmt_time(r["chunk_s"]),
            timing.fmt_time(r["per_step_in_chunk_s"]), timing.fmt_time(r["step_s"]),
            timing.fmt_num(r["chunk_vs_fused"]),
            timing.fmt_num(r["x_floor"]), f"{r['bytes_per_sample'] / 1024:.1f} KiB",
        ])  # fmt: skip
    note = "" if other_load is None else f", other processes {100 * other_load:.0f}% of CPUs"
    timing.print_table(
        f"{rows[0]['neuron']}, chunk of {steps} steps, n_in {N_IN}, n_out {N_OUT}{note}",
        ["implementation", "hidden", "batch", "chunk", "per step (chunk)", "step()", "chunk / fused",
         "x floor", "memory / sample"],
        table,
    )  # fmt: skip


def main(argv=None) -> int:
    args = parse_args(argv)
    device, env = timing.start(args)
    args.warmup = 1
    args.min_repeat_s = 0.0 if args.quick else 0.02
    whole_run = timing.OtherLoad()
    peaks = timing.report_peaks(device, args.quick)
    rows: list[dict] = []
    for hidden in args.hidden:
        load = timing.OtherLoad()
        config_rows = []
        for batch in args.batches:
            config_rows += bench_config(args, device, peaks, hidden, batch)
        other = load.fraction()
        for r in config_rows:
            r["other_load"] = other
        print_rows(config_rows, args.steps, other)
        rows += config_rows
    other = whole_run.fraction()
    timing.print_other_load(other)
    if args.json:
        timing.write_json(args.json, {"benchmark": "eprop_lif", **env, "peaks": peaks.as_dict(), "other_load": other,
                                      "args": timing.args_record(args), "rows": rows})  # fmt: skip
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
