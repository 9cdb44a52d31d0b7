"""DFA benchmark: the fused projection op, then a whole training step.

    python benchmarks/bench_dfa.py [--device cpu|cuda] [--batches 128,512]
        [--sizes 784,1000,1000,1000,10] [--repeats N] [--threads N]
        [--json PATH] [--quick]

Part 1 times `dfa_project` against what one would write without it and
against its floor on this device: the time the op would take if it only had
to do its FLOPs at the measured GEMM rate, or only move its minimum bytes at
the measured copy bandwidth, whichever is longer.

Part 2 times a full SGD step (zero_grad, forward, backward, step) of an MLP
trained by backprop, by localgrad's DFA, by DFA written in plain PyTorch
around the reference, and by BioTorch's DFA when it is installed, next to the
FLOP bound of DFA's speed-up over backprop.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import math
import os
import sys
import warnings

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing as timing  # noqa: E402

import localgrad  # noqa: E402
from localgrad import Activation, reference  # noqa: E402

RELU = int(Activation.RELU)


def parse_args(argv=None) -> argparse.Namespace:
    p = timing.benchmark_parser(__doc__, repeats_default_help="20")
    p.add_argument("--batches", type=timing.parse_ints, default=None, help="comma-separated (default 128,512)")
    p.add_argument("--sizes", type=timing.parse_ints, default=None,
                   help="MLP widths in,hidden...,out (default 784,1000,1000,1000,10)")
    args = p.parse_args(argv)
    if args.quick:
        args.batches = args.batches or [8, 16]
        args.sizes = args.sizes or [32, 24, 16, 4]
        args.repeats = args.repeats or 3
    args.batches = args.batches or [128, 512]
    args.sizes = args.sizes or [784, 1000, 1000, 1000, 10]
    args.repeats = args.repeats or 20
    if len(args.sizes) < 3:
        p.error("--sizes needs at least in,hidden,out")
    return args


def failed(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:160]


# ---------------------------------------------------------------------------
# Part 1: the op


def op_cost(batch: int, n_out: int, total: int, elem: int) -> tuple[float, float]:
    """FLOPs and the bytes no implementation can avoid moving."""
    flops = 2 * batch * n_out * total + batch * total  # projection + the f' multiply
    nbytes = elem * (batch * n_out + n_out * total + batch * total + batch * total)  # e, B, h in; delta out
    return flops, nbytes


def bench_op(args, device, peaks, batch: int) -> list[dict]:
    n_out, widths = args.sizes[-1], args.sizes[1:-1]
    total = sum(widths)
    g = torch.Generator(device="cpu").manual_seed(batch)
    e = torch.randn(batch, n_out, generator=g).to(device)
    feedback = torch.randn(n_out, total, generator=g).to(device)
    # Post-ReLU activations: about half zeros, as in training.
    acts = [torch.randn(batch, w, generator=g).relu_().to(device) for w in widths]
    kinds, slopes = [RELU] * len(widths), [0.0] * len(widths)
    buffer = torch.empty(batch, total, device=device)
    blocks = list(buffer.split(widths, dim=1))
    # Outputs that are not column blocks of one buffer: the CPU kernel then
    # cannot GEMM straight into them and goes through a temporary.
    separate = [torch.empty(batch, w, device=device) for w in widths]
    # A hand-written DFA keeps one B_l per layer.
    per_layer_b = [b.contiguous() for b in feedback.split(widths, dim=1)]
    op = getattr(torch.ops.localgrad, "dfa_project", None) if localgrad.has_extension() else None

    def fused_block():
        op(e, feedback, acts, kinds, slopes, blocks)

    def fused_separate():
        op(e, feedback, acts, kinds, slopes, separate)

    def wrapper():  # what the DFA rule calls every step: a fresh buffer each time
        return localgrad.ops.dfa_project(e, feedback, acts, kinds, slopes)

    def ref():
        return reference.dfa_project(e, feedback, acts, kinds, slopes)

    def eager():
        return [(e @ b) * (h > 0) for b, h in zip(per_layer_b, acts)]

    def gemm_only():
        torch.mm(e, feedback, out=buffer)

    variants = [
        ("(a) fused op, into column blocks", fused_block if op else None),
        ("(b) fused op, separate outputs", fused_separate if op else None),
        ("(a') ops.dfa_project, allocates", wrapper),
        ("(c) reference.dfa_project", ref),
        ("(d) eager (e @ B_l) * (h_l > 0)", eager),
        # Not a DFA: the projection's GEMM alone, the part any variant must do.
        ("(-) GEMM e @ B alone, no f'", gemm_only),
    ]
    flops, nbytes = op_cost(batch, n_out, total, e.element_size())
    floor = peaks.floor_s(flops, nbytes)
    rows = []
    for name, fn in variants:
        row = {"part": "op", "batch": batch, "variant": name, "flops": flops, "bytes": nbytes, "floor_s": floor}
        if fn is None:
            row["error"] = "compiled extension not loaded"
        else:
            try:
                t = timing.time_fn(fn, device, args.repeats, warmup=args.warmup, min_repeat_s=args.min_repeat_s)
                row.update(t.as_dict())
            except Exception as exc:  # a row that cannot run says why; the others still run
                row["error"] = failed(exc)
        rows.append(row)
    fused = rows[0].get("median_s")
    for row in rows:
        t = row.get("median_s")
        if t:
            row["x_floor"] = t / floor
            row["gbps"] = nbytes / t / 1e9
            row["gflops"] = flops / t / 1e9
            row["vs_fused"] = t / fused if fused else None
    return rows


def load_note(load: float | None) -> str:
    return "" if load is None else f"; other processes used {100 * load:.0f}% of the CPUs meanwhile"


def print_op_table(rows: list[dict], batch: int, n_out: int, widths: list[int], load: float | None) -> None:
    r0 = rows[0]
    title = (f"Part 1, dfa_project: batch {batch}, n_out {n_out}, widths {widths}, fp32 ReLU; "
             f"floor {timing.fmt_time(r0['floor_s'])} ({r0['flops'] / 1e6:.3g} MFLOP, {r0['bytes'] / 1e6:.3g} MB)"
             f"{load_note(load)}")
    table = []
    for r in rows:
        if "error" in r:
            table.append([r["variant"], "n/a", "", "", "", "", "", r["error"]])
            continue
        table.append([
            r["variant"], timing.fmt_time(r["median_s"]), timing.fmt_time(r["min_s"]), timing.fmt_num(r["x_floor"]),
            timing.fmt_num(r["gbps"]), timing.fmt_num(r["gflops"]), timing.fmt_num(r["vs_fused"]), "",
        ])
    timing.print_table(title, ["variant", "median", "min", "x floor", "GB/s", "GFLOP/s", "vs fused", "note"], table)


# ---------------------------------------------------------------------------
# Part 2: the training step


def step_macs(sizes: list[int]) -> tuple[int, int]:
    """Multiply-adds per sample of one backprop step and one DFA step."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    forward = sum(a * b for a, b in pairs)
    weight_grads = forward
    input_grads = sum(a * b for a, b in pairs[1:])  # the first layer's input needs none
    projection = sizes[-1] * sum(sizes[1:-1])
    return forward + weight_grads + input_grads, forward + weight_grads + projection


class ReferenceDFA:
    """DFA by hand in plain PyTorch: autograd only on the output layer (for e
    and the output layer's own gradient), the hidden deltas from the reference
    projection, their weight gradients from one mm each."""

    def __init__(self, model: nn.Sequential, n_out: int, seed: int = 0):
        self.linears = [m for m in model if isinstance(m, nn.Linear)]
        widths = [m.out_features for m in self.linears[:-1]]
        g = torch.Generator().manual_seed(seed)
        ref = self.linears[0].weight
        self.feedback = torch.cat(
            [(torch.rand(n_out, w, generator=g) * 2 - 1) / math.sqrt(w) for w in widths], dim=1
        ).to(ref.device, ref.dtype)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        inputs, outputs = [], []
        with torch.no_grad():
            h = x
            for layer in self.linears[:-1]:
                inputs.append(h)
                h = F.linear(h, layer.weight, layer.bias).relu_()
                outputs.append(h)
        out = self.linears[-1](h)
        self._tape = inputs, outputs
        out.register_hook(self._backward)
        return F.cross_entropy(out, y)

    def _backward(self, e: torch.Tensor) -> None:
        inputs, outputs = self._tape
        n = len(outputs)
        deltas = reference.dfa_project(e, self.feedback, outputs, [RELU] * n, [0.0] * n)
        for layer, x, delta in zip(self.linears, inputs, deltas):
            layer.weight.grad = delta.t() @ x
            layer.bias.grad = delta.sum(0)


def bench_step(args, device, batch: int, macs: tuple[int, int], peaks) -> list[dict]:
    sizes = args.sizes
    torch.manual_seed(0)
    base = timing.relu_mlp(sizes).to(device)
    x = torch.randn(batch, sizes[0], device=device)
    y = torch.randint(0, sizes[-1], (batch,), device=device)
    lr = 1e-3  # small: hundreds of steps on one batch must stay finite (NaNs time differently)

    def plain_step(model):
        opt = torch.optim.SGD(model.parameters(), lr=lr)

        def step():
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss

        return step

    def backprop():
        return plain_step(copy.deepcopy(base))

    def localgrad_dfa():
        return plain_step(localgrad.convert(copy.deepcopy(base), rule="dfa"))

    def reference_dfa():
        model = copy.deepcopy(base)
        rule = ReferenceDFA(model, sizes[-1])
        opt = torch.optim.SGD(model.parameters(), lr=lr)

        def step():
            opt.zero_grad()
            loss = rule.loss(x, y)
            loss.backward()
            opt.step()
            return loss

        return step

    def biotorch_dfa():
        from biotorch.module.biomodule import BioModule

        with contextlib.redirect_stdout(io.StringIO()):  # it prints a conversion report
            model = BioModule(copy.deepcopy(base), mode="dfa", output_dim=sizes[-1]).to(device)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)

        def step():
            opt.zero_grad()
            # Its documented DFA call: the forward takes targets and loss to
            # broadcast e to every layer's backward hook.
            out = model(x, targets=y, loss_function=F.cross_entropy)
            loss = F.cross_entropy(out, y)
            loss.backward()
            opt.step()
            return loss

        return step

    variants = [
        ("backprop", backprop),
        ("localgrad DFA (convert)", localgrad_dfa),
        ("DFA in PyTorch via reference", reference_dfa),
        ("BioTorch DFA 0.0.16", biotorch_dfa),
    ]
    bp_macs, dfa_macs = macs
    rows = []
    for name, make in variants:
        row = {"part": "step", "batch": batch, "variant": name,
               "macs": batch * (bp_macs if name == "backprop" else dfa_macs)}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # BioTorch's non-full backward hook warning, every step
                step = make()
                t = timing.time_fn(step, device, args.repeats, warmup=args.warmup, min_repeat_s=args.min_repeat_s)
                last = float(step())
            row.update(t.as_dict())
            row["final_loss"] = last
            row["flop_floor_s"] = 2 * row["macs"] / peaks.flops
            if not math.isfinite(last):
                row["note"] = "loss not finite: times may not be representative"
        except ImportError as exc:
            row["error"] = f"not installed ({failed(exc)}); pip install --no-deps biotorch==0.0.16"
        except Exception as exc:
            row["error"] = failed(exc)
        rows.append(row)
    bp = rows[0].get("median_s")
    for row in rows:
        if row.get("median_s") and bp:
            row["speedup_vs_backprop"] = bp / row["median_s"]
            row["x_flop_floor"] = row["median_s"] / row["flop_floor_s"]
    return rows


def print_step_table(rows: list[dict], batch: int, sizes: list[int], bound: float, load: float | None) -> None:
    title = (f"Part 2, SGD step of MLP {'-'.join(map(str, sizes))}, batch {batch}, cross-entropy; "
             f"FLOP bound of DFA's speed-up {bound:.3g}x{load_note(load)}")
    table = []
    for r in rows:
        if "error" in r:
            table.append([r["variant"], "n/a", "", "", "", r["error"]])
            continue
        table.append([r["variant"], timing.fmt_time(r["median_s"]), timing.fmt_time(r["min_s"]),
                      timing.fmt_num(r.get("x_flop_floor")), timing.fmt_num(r.get("speedup_vs_backprop")) + "x",
                      r.get("note", "")])
    timing.print_table(title, ["variant", "median", "min", "x FLOP floor", "vs backprop", "note"], table)


# ---------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    device, env = timing.start(args)
    # A repeat of a microsecond op runs many calls, so the clock's resolution
    # and the timer's own overhead stay out of the figure.
    args.warmup = 1 if args.quick else 3
    args.min_repeat_s = 0.0 if args.quick else (0.005 if device.type == "cuda" else 0.02)

    whole_run = timing.OtherLoad()
    print(f"timing: median and min per call over {args.repeats} loops, after {args.warmup} warm-up calls")

    peaks = timing.report_peaks(device, args.quick)

    rows: list[dict] = []
    n_out, widths = args.sizes[-1], args.sizes[1:-1]
    for batch in args.batches:
        load = timing.OtherLoad()
        op_rows = bench_op(args, device, peaks, batch)
        for row in op_rows:
            row["other_load"] = load.fraction()
        print_op_table(op_rows, batch, n_out, widths, op_rows[0]["other_load"])
        rows += op_rows

    bp_macs, dfa_macs = step_macs(args.sizes)
    bound = bp_macs / dfa_macs
    print(f"\nMultiply-adds per sample: backprop {bp_macs / 1e6:.4g}M (forward + weight grads + input grads "
          f"of layers 2..L), DFA {dfa_macs / 1e6:.4g}M (forward + weight grads + projection "
          f"{n_out}x{sum(widths)}); bound on DFA's speed-up {bound:.3g}x")
    for batch in args.batches:
        load = timing.OtherLoad()
        step_rows = bench_step(args, device, batch, (bp_macs, dfa_macs), peaks)
        for row in step_rows:
            row["other_load"] = load.fraction()
        print_step_table(step_rows, batch, args.sizes, bound, step_rows[0]["other_load"])
        rows += step_rows

    other = whole_run.fraction()
    timing.print_other_load(other)
    if args.json:
        timing.write_json(args.json, {
            "benchmark": "dfa",
            **env,
            "args": timing.args_record(args),
            "peaks": peaks.as_dict(),
            "other_load": other,
            "macs_per_sample": {"backprop": bp_macs, "dfa": dfa_macs, "speedup_bound": bound},
            "rows": rows,
        })
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
