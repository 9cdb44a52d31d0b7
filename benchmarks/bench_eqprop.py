"""EqProp benchmark: the fused relaxation, steps to convergence sync vs async,
then a whole training step against backprop.

    python benchmarks/bench_eqprop.py [--device cpu|cuda] [--batches 128,1024]
        [--steps 30,100,250] [--nets 784-500-10,784-512-512-512-10]
        [--repeats N] [--threads N] [--json PATH] [--quick]

Part 1 times T free-phase steps (hard sigmoid, synchronous, no early exit) of
`eqprop_relax` against eager PyTorch: (b) the way published EqProp code runs
it (Laborieux et al. 2021, rain-neuromorphics: every step calls every layer,
the input layer included), (c) the same with the constant input drive hoisted
out of the loop, (d) localgrad's reference (c plus the per-row early-exit
bookkeeping), and on CUDA (e) the CUDA-graph capture of (c), a fair stronger
baseline that removes the launch overhead. The floor is the time the
relaxation's FLOPs take at the measured GEMM rate.

Part 2 reports how many steps the free phase takes to converge (per-row
tolerance) with synchronous and asynchronous updates.

Part 3 times one training step (all phases and the update, then SGD) of
EqPropMLP, of the same EqProp through the reference ops, and of backprop on
an MLP of the same sizes (ReLU, cross-entropy).
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

import localgrad  # noqa: E402
from localgrad import reference  # noqa: E402
from localgrad.eqprop import EqPropMLP  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = timing.benchmark_parser(__doc__, repeats_default_help="5")
    p.add_argument("--batches", type=timing.parse_ints, default=None, help="comma-separated (default 128,1024)")
    p.add_argument("--steps", type=timing.parse_ints, default=None, help="relaxation steps T (default 30,100,250)")
    p.add_argument("--nets", type=timing.parse_nets, default=None,
                   help="networks as widths joined by '-', comma-separated (default 784-500-10,784-512-512-512-10)")
    args = p.parse_args(argv)
    if args.quick:
        args.batches = args.batches or [8]
        args.steps = args.steps or [5]
        args.nets = args.nets or [[32, 24, 4], [32, 16, 16, 4]]
        args.repeats = args.repeats or 2
    args.batches = args.batches or [128, 1024]
    args.steps = args.steps or [30, 100, 250]
    args.nets = args.nets or [[784, 500, 10], [784, 512, 512, 512, 10]]
    args.repeats = args.repeats or 5
    return args


def failed(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:160]


def net_name(sizes: list[int]) -> str:
    return "-".join(map(str, sizes))


def make_net(sizes: list[int], batch: int, device) -> tuple:
    torch.manual_seed(0)
    layers = [nn.Linear(a, b).to(device) for a, b in zip(sizes[:-1], sizes[1:])]
    weights = [m.weight.detach() for m in layers]
    biases = [m.bias.detach() for m in layers]
    x = torch.rand(batch, sizes[0], device=device)
    return x, weights, biases


def relax_flops(sizes: list[int], batch: int, steps: int) -> float:
    """The drive once, then per step every layer's products from below (k >= 2)
    and from above."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    per_step = sum(2 * a * b for a, b in pairs[1:])  # W_k s_k and W_k^T s_{k+1}, k >= 1
    return 2.0 * batch * (sizes[0] * sizes[1] + steps * per_step)


# ---------------------------------------------------------------------------
# Part 1: the relaxation


def eager_per_layer(x, weights, biases, states, steps):
    """Published EqProp code's loop: each step runs every layer, input included."""
    s = list(states)
    n = len(weights)
    for _ in range(steps):
        new = []
        for j in range(n):
            pre = F.linear(x if j == 0 else s[j - 1], weights[j], biases[j])
            if j + 1 < n:
                pre = pre + s[j + 1] @ weights[j + 1]
            new.append(pre.clamp(0, 1))
        s = new
    return s


def eager_hoisted(x, weights, biases, states, steps):
    s = list(states)
    n = len(weights)
    drive = F.linear(x, weights[0], biases[0])
    for _ in range(steps):
        new = []
        for j in range(n):
            pre = drive if j == 0 else F.linear(s[j - 1], weights[j], biases[j])
            if j + 1 < n:
                pre = torch.addmm(pre, s[j + 1], weights[j + 1])
            new.append(pre.clamp_(0, 1))
        s = new
    return s


def cuda_graph_of(fn, x, weights, biases, states, steps):
    """Captures fn's whole relaxation once; replays it."""
    static = [s.clone() for s in states]
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            fn(x, weights, biases, static, steps)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn(x, weights, biases, static, steps)
    return graph.replay


def bench_relax(args, device, peaks, sizes, batch, steps) -> list[dict]:
    x, weights, biases = make_net(sizes, batch, device)
    zeros = [torch.zeros(batch, n, device=device) for n in sizes[1:]]
    work = [z.clone() for z in zeros]
    op = torch.ops.localgrad.eqprop_relax if localgrad.has_extension() else None

    def fused():
        for w, z in zip(work, zeros):
            w.copy_(z)
        op(x, weights, biases, work, None, 0.0, 0, 0, steps, False, 0.0)

    variants = [
        ("(a) fused eqprop_relax", fused if op else None),
        ("(b) eager, every layer each step", lambda: eager_per_layer(x, weights, biases, zeros, steps)),
        ("(c) eager, drive hoisted", lambda: eager_hoisted(x, weights, biases, zeros, steps)),
        ("(d) reference.eqprop_relax", lambda: reference.eqprop_relax(x, weights, biases, zeros, steps=steps)),
    ]
    if device.type == "cuda":
        try:
            variants.append(("(e) CUDA graph of (c)", cuda_graph_of(eager_hoisted, x, weights, biases, zeros, steps)))
        except Exception as exc:  # capture can fail on some setups; the row says why
            variants.append(("(e) CUDA graph of (c)", exc))
    flops = relax_flops(sizes, batch, steps)
    floor = flops / peaks.flops
    rows = []
    for name, fn in variants:
        row = {"part": "relax", "net": net_name(sizes), "batch": batch, "steps": steps, "variant": name,
               "flops": flops, "floor_s": floor}
        if fn is None:
            row["error"] = "compiled extension not loaded"
        elif isinstance(fn, BaseException):
            row["error"] = failed(fn)
        else:
            try:
                t = timing.time_fn(fn, device, args.repeats, warmup=args.warmup, min_repeat_s=args.min_repeat_s)
                row.update(t.as_dict())
            except Exception as exc:
                row["error"] = failed(exc)
        rows.append(row)
    fused_t = rows[0].get("median_s")
    for row in rows:
        t = row.get("median_s")
        if t:
            row["x_floor"] = t / floor
            row["gflops"] = flops / t / 1e9
            row["vs_fused"] = t / fused_t if fused_t else None
    return rows


def print_relax_table(rows, sizes, load):
    title = (f"Part 1, free relaxation of {net_name(sizes)} (fp32, hard sigmoid, sync, no early exit)"
             f"{load_note(load)}")
    table = []
    for r in rows:
        key = f"b={r['batch']} T={r['steps']} {r['variant']}"
        if "error" in r:
            table.append([key, "n/a", "", "", "", "", r["error"]])
            continue
        table.append([key, timing.fmt_time(r["median_s"]), timing.fmt_time(r["min_s"]), timing.fmt_num(r["x_floor"]),
                      timing.fmt_num(r["gflops"]), timing.fmt_num(r["vs_fused"]) + "x", ""])
    timing.print_table(title, ["case", "median", "min", "x floor", "GFLOP/s", "vs fused", "note"], table)


def load_note(load: float | None) -> str:
    return "" if load is None else f"; other processes used {100 * load:.0f}% of the CPUs meanwhile"


# ---------------------------------------------------------------------------
# Part 2: steps to convergence


def bench_convergence(args, device, sizes) -> list[dict]:
    """Free phase from zeros on MNIST digits (or random inputs of the net's
    width), nn.Linear's initial weights, until every row moves < tol."""
    batch = min(args.batches)
    x, weights, biases = make_net(sizes, batch, device)
    if sizes[0] == 784:
        x = localgrad.data.mnist_subset().x_train[:batch].to(device)
    max_steps = 50 if args.quick else 500
    rows = []
    for tol in (1e-3, 1e-5):
        for async_update in (False, True):
            states = [torch.zeros(x.shape[0], n, device=device) for n in sizes[1:]]
            ran = localgrad.ops.eqprop_relax(x, weights, biases, states, steps=max_steps,
                                             async_update=async_update, tol=tol)
            ran = ran.double()
            rows.append({"part": "convergence", "net": net_name(sizes), "batch": x.shape[0], "tol": tol,
                         "update": "async" if async_update else "sync", "max_steps": max_steps,
                         "mean_steps": ran.mean().item(), "max_steps_used": ran.max().item(),
                         "unconverged_rows": int((ran >= max_steps).sum())})
    return rows


def print_convergence_table(rows):
    table = [[r["net"], f"{r['tol']:g}", r["update"], timing.fmt_num(r["mean_steps"]),
              timing.fmt_num(r["max_steps_used"]),
              str(r["unconverged_rows"])] for r in rows]
    timing.print_table(f"Part 2, free-phase steps until every unit of a row moves < tol (batch {rows[0]['batch']}, "
                       f"cap {rows[0]['max_steps']}, initial weights)",
                       ["net", "tol", "update", "mean steps", "max steps", "rows at cap"], table)


# ---------------------------------------------------------------------------
# Part 3: the training step


class ReferenceEqProp:
    """EqPropMLP's step written in plain PyTorch around the reference ops."""

    def __init__(self, model: EqPropMLP):
        self.model = model

    @torch.no_grad()
    def step(self, x, y):
        m = self.model
        weights = [layer.weight for layer in m.layers]
        biases = [layer.bias for layer in m.layers]
        target = F.one_hot(y, m.sizes[-1]).to(x)
        zeros = m.initial_states(x.shape[0])
        free, _ = reference.eqprop_relax(x, weights, biases, zeros, steps=m.t_free)
        neg, _ = reference.eqprop_relax(x, weights, biases, free, target, -m.beta, 1, 0, m.t_nudge)
        pos, _ = reference.eqprop_relax(x, weights, biases, free, target, m.beta, 1, 0, m.t_nudge)
        gw, gb = reference.eqprop_update(x, neg, pos, 1 / (2 * m.beta * x.shape[0]))
        for layer, w, b in zip(m.layers, gw, gb):
            layer.weight.grad, layer.bias.grad = w, b


def bench_step(args, device, sizes, batch) -> list[dict]:
    torch.manual_seed(0)
    x = torch.rand(batch, sizes[0], device=device)
    y = torch.randint(0, sizes[-1], (batch,), device=device)
    lr = 1e-3

    def eqprop_model():
        torch.manual_seed(0)
        return EqPropMLP(sizes, t_free=30, t_nudge=10).to(device)

    def fused():
        model = eqprop_model()
        opt = torch.optim.SGD(model.parameters(), lr=lr)

        def step():
            opt.zero_grad()
            model.eqprop_step(x, y)
            opt.step()

        return step

    def eager():
        model = eqprop_model()
        rule = ReferenceEqProp(model)
        opt = torch.optim.SGD(model.parameters(), lr=lr)

        def step():
            opt.zero_grad()
            rule.step(x, y)
            opt.step()

        return step

    def backprop():
        torch.manual_seed(0)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
        model = nn.Sequential(*layers).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=lr)

        def step():
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()

        return step

    rows = []
    for name, make in [("EqPropMLP centered (T 30 + 2x10)", fused), ("same via reference ops", eager),
                       ("backprop, same sizes", backprop)]:
        row = {"part": "step", "net": net_name(sizes), "batch": batch, "variant": name}
        try:
            t = timing.time_fn(make(), device, args.repeats, warmup=args.warmup, min_repeat_s=args.min_repeat_s)
            row.update(t.as_dict())
        except Exception as exc:
            row["error"] = failed(exc)
        rows.append(row)
    bp = rows[-1].get("median_s")
    for row in rows:
        if row.get("median_s") and bp:
            row["vs_backprop"] = row["median_s"] / bp
    return rows


def print_step_table(rows, load):
    table = []
    for r in rows:
        key = f"{r['net']} b={r['batch']} {r['variant']}"
        if "error" in r:
            table.append([key, "n/a", "", "", r["error"]])
            continue
        table.append([key, timing.fmt_time(r["median_s"]), timing.fmt_time(r["min_s"]),
                      timing.fmt_num(r.get("vs_backprop")) + "x", ""])
    timing.print_table(f"Part 3, one SGD training step{load_note(load)}",
                       ["case", "median", "min", "time / backprop", "note"], table)


# ---------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    device, env = timing.start(args)
    args.warmup = 1
    args.min_repeat_s = 0.0 if args.quick else (0.005 if device.type == "cuda" else 0.0)

    whole_run = timing.OtherLoad()
    print(f"timing: median and min per call over {args.repeats} loops, after {args.warmup} warm-up call")
    peaks = timing.report_peaks(device, args.quick)

    rows: list[dict] = []
    for sizes in args.nets:
        load = timing.OtherLoad()
        part = []
        for batch in args.batches:
            for steps in args.steps:
                part += bench_relax(args, device, peaks, sizes, batch, steps)
        frac = load.fraction()
        for row in part:
            row["other_load"] = frac
        print_relax_table(part, sizes, frac)
        rows += part

    conv = []
    for sizes in args.nets:
        conv += bench_convergence(args, device, sizes)
    print_convergence_table(conv)
    rows += conv

    load = timing.OtherLoad()
    step_rows = []
    for sizes in args.nets:
        step_rows += bench_step(args, device, sizes, min(args.batches))
    frac = load.fraction()
    for row in step_rows:
        row["other_load"] = frac
    print_step_table(step_rows, frac)
    rows += step_rows

    if device.type == "cpu":
        print("\nCPU timings on a shared machine are noisy; ratios measured side by side in one run mean more "
              "than absolute times.")
    if args.json:
        timing.write_json(args.json, {"benchmark": "eqprop", "environment": env, "peaks": peaks.as_dict(),
                                      "other_load": whole_run.fraction(), "rows": rows})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
