"""Online RNN benchmark: per rule, the sensitivity/trace update of one step
and of a chunk, the compiled kernel against the eager reference and against
BPTT by autograd, with the learner's memory per sample.

    python benchmarks/bench_online.py [--device cpu|cuda] [--hidden 32,64,128,256]
        [--batches 1,32,256] [--chunk 16] [--repeats N] [--threads N]
        [--max-influence-mib 512] [--plot PATH] [--json PATH] [--quick]

Rows per (hidden H, batch B): rtrl (rtrl_step; its floor is the W_hh·M
matmul alone, timed the same way), snap1 (snap_step), rflo/eprop (rflo_chunk
over one step and over a chunk; the two rules share the kernel), uoro
(uoro_step), kfrtrl / kfrtrl2 (kfrtrl_step at rank 1, its floor the
W_hh·A matmul, and rank 2, whose QR/SVD reduction runs in ATen), bptt
(forward + backward of `chunk` steps by autograd, per step).
Input size 1 + 1 cue (I = 2). RTRL is skipped where its influence
(B·H·H·(I+H+1) elements) exceeds --max-influence-mib. --plot writes time and
memory per sample against H (log-log) at the middle batch size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing as timing  # noqa: E402

from localgrad import ops  # noqa: E402
from localgrad.online import LeakyRNN, SnAp  # noqa: E402
from localgrad.online.memory import saved_bytes  # noqa: E402
from localgrad.reference import online_rnn as ref  # noqa: E402

INPUT = 2


def parse_args(argv=None) -> argparse.Namespace:
    p = timing.benchmark_parser(__doc__, repeats_default_help="5")
    p.add_argument("--hidden", type=timing.parse_ints, default=None, help="comma-separated (default 32,64,128,256)")
    p.add_argument("--batches", type=timing.parse_ints, default=None, help="comma-separated (default 1,32,256)")
    p.add_argument("--chunk", type=int, default=16, help="time steps of a chunk (default 16)")
    p.add_argument("--max-influence-mib", type=float, default=512.0, help="skip RTRL above this influence size")
    p.add_argument("--plot", metavar="PATH", help="write the log-log scaling plot here (needs matplotlib)")
    p.add_argument("--plot-batch", type=int, default=None,
                   help="the batch size the plot shows (default: the smallest, where RTRL fits at every size)")
    p.add_argument("--from-json", metavar="PATH",
                   help="measure nothing: print the table (and --plot) of a saved --json result")
    args = p.parse_args(argv)
    if args.quick:
        args.hidden = args.hidden or [8, 16]
        args.batches = args.batches or [1, 4]
        args.repeats = args.repeats or 2
        args.chunk = min(args.chunk, 4)
    args.hidden = args.hidden or [32, 64, 128, 256]
    args.batches = args.batches or [1, 32, 256]
    args.repeats = args.repeats or 5
    return args


def step_inputs(hidden, batch, device, dtype=torch.float32):
    torch.manual_seed(0)
    model = LeakyRNN(INPUT, hidden, 2, alpha=0.5).to(device=device, dtype=dtype)
    r = lambda *s: torch.randn(*s, device=device, dtype=dtype)  # noqa: E731
    w = model.weight_hh.detach()
    return model, w, r(batch, hidden), r(batch, INPUT), r(batch, hidden).abs()


def bench_config(args, device, hidden, batch) -> list[dict]:
    cols = INPUT + hidden + 1
    elem = 4
    model, w, h, x, d = step_inputs(hidden, batch, device)
    time = lambda fn: timing.time_fn(fn, device, args.repeats, warmup=1,
                                     min_repeat_s=0.005 if args.quick else 0.02)  # noqa: E731
    rows = []

    def row(rule, kind, kernel, reference=None, floor=None, bytes_per_sample=0, note=""):
        rows.append({
            "rule": rule, "kind": kind, "hidden": hidden, "batch": batch,
            "kernel_s": kernel.median_s if kernel else None,
            "reference_s": reference.median_s if reference else None,
            "floor_s": floor.median_s if floor else None,
            "bytes_per_sample": bytes_per_sample, "note": note,
        })

    influence_mib = batch * hidden * hidden * cols * elem / 2**20
    if influence_mib <= args.max_influence_mib:
        m = torch.randn(batch, hidden, hidden * cols, device=device)
        row("rtrl", "step", time(lambda: ops.rtrl_step(m, w, h, x, d, None, 0.5)),
            time(lambda: ref.rtrl_step(m, w, h, x, d, None,
                                       0.5)) if influence_mib <= args.max_influence_mib / 4 else None,
            time(lambda: torch.matmul(w, m)), hidden * hidden * cols * elem)
        del m
    else:
        row("rtrl", "step", None, note=f"skipped: influence {influence_mib:.0f} MiB > {args.max_influence_mib:.0f} MiB")

    snap = SnAp(model, 1)
    lists = (snap.entry_unit, snap.entry_row, snap.nbr_ptr, snap.nbr_entry, snap.nbr_weight)
    ms = torch.randn(batch, hidden, cols, device=device)
    row("snap1", "step", time(lambda: ops.snap_step(ms, w, h, x, d, None, 0.5, *lists)),
        time(lambda: ref.snap_step(ms, w, h, x, d, None, 0.5, *lists)), bytes_per_sample=hidden * cols * elem)

    for steps, kind in ((1, "step"), (args.chunk, f"chunk/{args.chunk}")):
        xs = torch.randn(steps, batch, INPUT, device=device)
        hs, ds, ls = (torch.randn(steps, batch, hidden, device=device) for _ in range(3))
        k = time(lambda: ops.rflo_chunk(ms, xs, hs, ds, ls, None, 0.5))
        rf = time(lambda: ref.rflo_chunk(ms, xs, hs, ds, ls, None, 0.5))
        for t in (k, rf):
            t.median_s /= steps
        row("rflo/eprop", kind, k, rf, bytes_per_sample=hidden * cols * elem)

    s, nu = torch.randn(batch, hidden, device=device), torch.randn(batch, hidden, device=device).sign()
    row("uoro", "step", time(lambda: ops.uoro_step(s, ms, w, nu, h, x, d, None, 0.5)),
        time(lambda: ref.uoro_step(s, ms, w, nu, h, x, d, None, 0.5, 1e-7)),
        bytes_per_sample=(hidden + hidden * cols) * elem)

    # KF-RTRL, ranks 1 and 2: the fused step (rank 2: fused terms + ATen QR/SVD
    # reduction) against the eager reference; rank 1's floor is W_hh·A alone.
    for rank in (1, 2):
        u = torch.randn(batch, rank, cols, device=device)
        a = torch.randn(batch, rank, hidden, hidden, device=device) / hidden
        signs = torch.randint(0, 2, (batch, rank + 1), device=device).to(u.dtype) * 2 - 1
        row("kfrtrl" if rank == 1 else f"kfrtrl{rank}", "step",
            time(lambda: ops.kfrtrl_step(u, a, w, signs, h, x, d, 0.5, check_signs=False)),
            time(lambda: ref.kfrtrl_step(u, a, w, signs, h, x, d, 0.5, 1e-7)),
            time(lambda: torch.matmul(w, a)) if rank == 1 else None,
            bytes_per_sample=rank * (cols + hidden * hidden) * elem)

    xs = torch.randn(args.chunk, batch, INPUT, device=device)
    def bptt():
        model.zero_grad()
        ys, _ = model(xs)
        ys.square().mean().backward()

    # Per sample: the parameters autograd keeps are shared by the batch.
    saved = saved_bytes(bptt, model.parameters())
    tb = time(bptt)
    tb.median_s /= args.chunk
    row("bptt", f"fwd+bwd/{args.chunk}", tb, bytes_per_sample=saved // max(batch, 1),
        note=f"memory for {args.chunk} steps, grows with T")
    return rows


def print_rows(rows):
    table = []
    for r in rows:
        k, rf, fl = r["kernel_s"], r["reference_s"], r["floor_s"]
        table.append([
            r["rule"], r["kind"], str(r["hidden"]), str(r["batch"]), timing.fmt_time(k), timing.fmt_time(rf),
            timing.fmt_num(rf / k) if k and rf else "-", timing.fmt_num(k / fl) if k and fl else "-",
            f"{r['bytes_per_sample']:,}", r["note"],
        ])
    timing.print_table("time per step (median); ref/kernel > 1: kernel faster; kernel/floor: RTRL against its W·M "
                       "matmul, KF-RTRL against its W·A matmul",
                       ["rule", "kind", "H", "B", "kernel", "reference", "ref/kernel", "kernel/floor", "bytes/sample",
                        "note"], table)


def plot(rows, path, batch):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"\nmatplotlib is not installed: no plot written to {path}")
        return
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for rule in ("rtrl", "snap1", "rflo/eprop", "uoro", "kfrtrl", "kfrtrl2", "bptt"):
        pts = [r for r in rows if r["rule"] == rule and r["batch"] == batch and r["kernel_s"]
               and not r["kind"].startswith("chunk")]
        if pts:
            hs = [r["hidden"] for r in pts]
            label = f"bptt ({pts[0]['kind'].split('/')[-1]} steps)" if rule == "bptt" else rule
            ax_t.loglog(hs, [r["kernel_s"] for r in pts], "o-", label=label)
            ax_m.loglog(hs, [r["bytes_per_sample"] for r in pts], "o-", label=label)
    # Slope guides through the smallest size: RTRL's n^4 time and n^3 memory,
    # the traces' n^2.
    for ax, key, slopes in ((ax_t, "kernel_s", (4, 2)), (ax_m, "bytes_per_sample", (3, 2))):
        first = [r for r in rows if r["rule"] == "rtrl" and r["batch"] == batch and r[key]]
        if first:
            h0, v0 = first[0]["hidden"], first[0][key]
            hs = sorted({r["hidden"] for r in rows})
            for k in slopes:
                ax.loglog(hs, [v0 * (h / h0) ** k for h in hs], ":", color="grey", linewidth=1)
                ax.annotate(f"n^{k}", (hs[-1], v0 * (hs[-1] / h0) ** k), color="grey", fontsize=8)
    ax_t.set(xlabel="hidden size", ylabel="seconds per step", title=f"time per step (batch {batch})")
    ax_m.set(xlabel="hidden size", ylabel="bytes per sample", title="learner memory per sample")
    ax_t.legend()
    fig.tight_layout()
    fig.savefig(path)
    print(f"\nwrote {path}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        print(f"online RNN benchmark from {args.from_json}: {saved['device_name']}, torch {saved['torch']}, "
              f"{saved['date_utc']}")
        print_rows(saved["rows"])
        if args.plot:
            plot(saved["rows"], args.plot, args.plot_batch or min(saved["args"]["batches"]))
        return 0
    device = timing.setup_device(args)
    env = timing.environment(device)
    print(f"online RNN benchmark on {env['device_name']}, torch {env['torch']}, {env['num_threads']} threads"
          " (CPU timings on a shared machine are noisy)")
    rows = []
    for hidden in args.hidden:
        for batch in args.batches:
            rows += bench_config(args, device, hidden, batch)
    print_rows(rows)
    if args.plot:
        plot(rows, args.plot, args.plot_batch or min(args.batches))
    if args.json:
        timing.write_json(args.json, {"benchmark": "online", **env,
                                      "args": timing.args_record(args), "rows": rows})
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
