"""Feedback-alignment family benchmark: whole training steps, then the
sign_feedback op alone.

    python benchmarks/bench_fa_family.py [--device cpu|cuda] [--batches 128,1024]
        [--models mlp,cnn] [--rules backprop,fa,usf,brsf,frsf,dfa]
        [--hidden 1000,1000,1000] [--repeats N] [--threads N]
        [--json PATH] [--quick]

Part 1 times a full SGD step (zero_grad, forward, backward, step) of an MLP
784-1000-1000-1000-10 and of the LeNet-like CNN of localgrad.demo, per rule,
side by side: localgrad (`localgrad.convert`), autograd backprop on the same
model (the baseline), the rule written in plain PyTorch from its equations
(B from localgrad.reference; DFA around reference.dfa_project) and BioTorch's
version of the rule when it is installed. Each row is put next to the FLOP
bound of the rule's speed-up over backprop and to its FLOP floor, the time
its multiply-adds would take at the GEMM rate measured in the same run.

Part 2 times the sign_feedback op (B = s*sign(W), or |R|*sign(W)) for the
weights of those models: the fused op against the reference and against the
eager one-liner, and against its floor (read W, write B at the measured copy
bandwidth: the op is bandwidth-bound).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.metadata
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
from bench_dfa import failed, load_note  # noqa: E402

import localgrad  # noqa: E402
from localgrad import Activation, reference  # noqa: E402
from localgrad.experiments.demo import lenet, mlp  # noqa: E402
from localgrad.feedback_alignment.feedback import FEEDBACK_RULES, RANDOM_MAGNITUDE, default_bound  # noqa: E402

RELU = int(Activation.RELU)
N_IN, N_OUT = 784, 10
ALL_RULES = ("backprop", *FEEDBACK_RULES, "dfa")
MODELS = ("mlp", "cnn")


def parse_names(allowed):
    def parse(text: str) -> list[str]:
        names = [t.strip() for t in text.split(",") if t.strip()]
        unknown = [n for n in names if n not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; choose from {', '.join(allowed)}")
        return names

    return parse


def parse_args(argv=None) -> argparse.Namespace:
    p = timing.benchmark_parser(__doc__, repeats_default_help="20")
    p.add_argument("--batches", type=timing.parse_ints, default=None, help="comma-separated (default 128,1024)")
    p.add_argument("--models", type=parse_names(MODELS), default=None, help="comma-separated (default mlp,cnn)")
    p.add_argument("--rules", type=parse_names(ALL_RULES), default=None,
                   help="comma-separated (default backprop,fa,usf,brsf,frsf,dfa); the backprop "
                        "baseline is always timed, every ratio is against it")
    p.add_argument("--hidden", type=timing.parse_ints, default=None, help="MLP hidden widths (default 1000,1000,1000)")
    p.add_argument("--row-seconds", type=float, default=None,
                   help="cap on a step row's timed loops: fewer repeats when one step is slow (default 10)")
    args = p.parse_args(argv)
    if args.quick:
        args.batches = args.batches or [8]
        args.hidden = args.hidden or [32, 16]
        args.repeats = args.repeats or 2
    args.batches = args.batches or [128, 1024]
    args.models = args.models or list(MODELS)
    args.rules = args.rules or list(ALL_RULES)
    args.hidden = args.hidden or [1000, 1000, 1000]
    args.repeats = args.repeats or 20
    args.row_seconds = args.row_seconds or 10.0
    return args


def build_model(name: str, hidden: list[int]) -> nn.Sequential:
    return lenet(N_OUT) if name == "cnn" else mlp([N_IN, *hidden, N_OUT])


def model_title(name: str, hidden: list[int]) -> str:
    if name == "cnn":
        return "LeNet-like CNN (localgrad.experiments.demo.lenet)"
    return f"MLP {'-'.join(map(str, [N_IN, *hidden, N_OUT]))}"


# ---------------------------------------------------------------------------
# The FLOP bound


def layer_costs(model: nn.Module, example: torch.Tensor) -> list[tuple[int, int]]:
    """(forward multiply-adds, output size) per sample of every Linear and
    Conv2d, in forward order. A conv's MACs: out_elements * in_channels/groups
    * kh * kw. ReLU, pooling and biases are not multiply-adds and are left out:
    they are the same for every rule."""
    costs, handles = [], []

    def hook(module, inputs, output):
        if isinstance(module, nn.Linear):
            per_output = module.in_features
        else:
            per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
        size = output[0].numel()
        costs.append((size * per_output, size))

    for m in model.modules():
        if type(m) in (nn.Linear, nn.Conv2d):
            handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(example[:1])
    finally:
        for h in handles:
            h.remove()
    return costs


def rule_macs(costs: list[tuple[int, int]]) -> dict[str, int]:
    """Multiply-adds per sample of one step of each rule."""
    forward = sum(m for m, _ in costs)
    weight_grads = forward  # dW_l = delta_l^T x_l costs what the forward did
    input_grads = forward - costs[0][0]  # the first layer's input needs none
    backprop = forward + weight_grads + input_grads
    # The FA family only swaps W for B in the input gradients: same count.
    # DFA: no input gradients, one projection e @ B_l per hidden layer.
    projection = N_OUT * sum(size for _, size in costs[:-1])
    return {
        "forward": forward,
        "projection": projection,
        **{rule: backprop for rule in ("backprop", *FEEDBACK_RULES)},
        "dfa": forward + weight_grads + projection,
    }


# ---------------------------------------------------------------------------
# The rules in plain PyTorch, from their equations


class ReferenceFeedback:
    """One layer's B, made as the equations say (Lillicrap 2016; Liao, Leibo &
    Poggio 2016), with localgrad's scales: fa, a fixed uniform draw; the sign
    rules, localgrad.reference.sign_feedback of the current W at every
    backward, which is what the fused op replaces."""

    def __init__(self, weight: torch.Tensor, rule: str, seed: int):
        self.weight, self.rule, self.seed, self.counter = weight, rule, seed, 0
        bound = default_bound(weight)
        self.scale = bound / math.sqrt(3.0) if rule == "usf" else bound
        if rule == "fa":
            g = torch.Generator().manual_seed(seed)
            self.fixed = ((torch.rand(weight.shape, generator=g) * 2 - 1) * bound).to(weight.device, weight.dtype)

    def __call__(self) -> torch.Tensor:
        if self.rule == "fa":
            return self.fixed
        if self.rule == "brsf":
            self.counter += 1
        return reference.sign_feedback(self.weight.detach(), self.seed, self.counter, self.scale,
                                       self.rule in RANDOM_MAGNITUDE)


class _LinearB(torch.autograd.Function):
    """y = x W^T + b; backward: grad_x = g B (not g W), true grad_W, grad_b."""

    @staticmethod
    def forward(ctx, x, weight, bias, feedback):
        ctx.save_for_backward(x)
        ctx.feedback = feedback
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        grad_x = g @ ctx.feedback() if ctx.needs_input_grad[0] else None
        return grad_x, g.t() @ x, g.sum(0), None


class _Conv2dB(torch.autograd.Function):
    """A convolution whose input gradient is the transposed convolution with B."""

    @staticmethod
    def forward(ctx, x, weight, bias, feedback, conv):
        ctx.save_for_backward(x)
        ctx.feedback, ctx.conv = feedback, conv
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        c = ctx.conv
        geometry = (c.stride, c.padding, c.dilation, c.groups)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.nn.grad.conv2d_input(x.shape, ctx.feedback(), g, *geometry)
        grad_w = torch.nn.grad.conv2d_weight(x, c.weight.shape, g, *geometry)
        return grad_x, grad_w, g.sum((0, 2, 3)), None, None


class ReferenceFeedbackLayer(nn.Module):
    def __init__(self, layer: nn.Module, rule: str, seed: int):
        super().__init__()
        self.layer = layer
        self.feedback = ReferenceFeedback(layer.weight, rule, seed)

    def forward(self, x):
        if isinstance(self.layer, nn.Conv2d):
            return _Conv2dB.apply(x, self.layer.weight, self.layer.bias, self.feedback, self.layer)
        return _LinearB.apply(x, self.layer.weight, self.layer.bias, self.feedback)


def reference_feedback_model(model: nn.Sequential, rule: str) -> nn.Sequential:
    for i, m in enumerate(model):
        if type(m) in (nn.Linear, nn.Conv2d):
            model[i] = ReferenceFeedbackLayer(m, rule, seed=i)
    return model


class ReferenceDFA:
    """DFA by hand: a no-grad forward through the hidden layers, autograd on
    the output layer only (for e and that layer's own gradient), the hidden
    deltas from reference.dfa_project and one weight-gradient product each.
    bench_dfa.ReferenceDFA does this for Linear layers only; this one also
    takes the CNN's convolutions, whose feedback reaches the whole C*H*W map.
    Expects every hidden layer to be followed directly by an nn.ReLU."""

    def __init__(self, model: nn.Sequential, seed: int = 0):
        mods = list(model)
        out_at = max(i for i, m in enumerate(mods) if type(m) is nn.Linear)
        self.body, self.head = mods[:out_at], mods[out_at]
        self.hidden = [m for m in self.body if type(m) in (nn.Linear, nn.Conv2d)]
        self._widths = None
        self.seed = seed

    def _feedback(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        widths = [h[0].numel() for h in outputs]
        if widths != self._widths:
            g = torch.Generator().manual_seed(self.seed)
            self.feedback = torch.cat(
                [(torch.rand(N_OUT, w, generator=g) * 2 - 1) / math.sqrt(w) for w in widths], dim=1
            ).to(outputs[0].device, outputs[0].dtype)
            self._widths = widths
        return self.feedback

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        inputs, outputs = [], []
        with torch.no_grad():
            h = x
            for m in self.body:
                if m in self.hidden:
                    inputs.append(h)
                h = m(h)
                if isinstance(m, nn.ReLU):
                    outputs.append(h)
        out = self.head(h)
        self._tape = inputs, outputs
        out.register_hook(self._backward)
        return F.cross_entropy(out, y)

    def _backward(self, e: torch.Tensor) -> None:
        inputs, outputs = self._tape
        n = len(outputs)
        flat = [h.flatten(1) for h in outputs]
        deltas = reference.dfa_project(e, self._feedback(outputs), flat, [RELU] * n, [0.0] * n)
        for layer, x, h, delta in zip(self.hidden, inputs, outputs, deltas):
            if isinstance(layer, nn.Conv2d):
                delta = delta.view(h.shape)
                layer.weight.grad = torch.nn.grad.conv2d_weight(
                    x, layer.weight.shape, delta, layer.stride, layer.padding, layer.dilation, layer.groups)
                layer.bias.grad = delta.sum((0, 2, 3))
            else:
                layer.weight.grad = delta.t() @ x
                layer.bias.grad = delta.sum(0)


# ---------------------------------------------------------------------------
# Part 1: the training step


def biotorch_version() -> str:
    try:
        return importlib.metadata.version("biotorch")
    except importlib.metadata.PackageNotFoundError:
        return "?"


def step_variants(base: nn.Sequential, rule: str, x: torch.Tensor, y: torch.Tensor, lr: float):
    """(implementation, maker) pairs; a maker returns the step to time."""

    def sgd_step(model, forward=None):
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
        forward = forward or (lambda: F.cross_entropy(model(x), y))

        def step():
            opt.zero_grad()
            loss = forward()
            loss.backward()
            opt.step()
            return loss

        return step

    if rule == "backprop":
        return [("autograd (baseline)", lambda: sgd_step(copy.deepcopy(base)))]

    def with_localgrad():
        return sgd_step(localgrad.convert(copy.deepcopy(base), rule=rule, example_input=x[:2]))

    def in_pytorch():
        model = copy.deepcopy(base)
        if rule == "dfa":
            dfa = ReferenceDFA(model)
            return sgd_step(model, lambda: dfa.loss(x, y))
        return sgd_step(reference_feedback_model(model, rule))

    def with_biotorch():
        from biotorch.module.biomodule import BioModule

        with contextlib.redirect_stdout(io.StringIO()):  # it prints a conversion report
            model = BioModule(copy.deepcopy(base), mode=rule, output_dim=N_OUT).to(x.device)
        if rule == "dfa":
            # Its documented DFA call: the forward takes targets and the loss,
            # to broadcast e to every layer's backward hook.
            return sgd_step(model, lambda: F.cross_entropy(model(x, targets=y, loss_function=F.cross_entropy), y))
        return sgd_step(model)

    pytorch_name = "PyTorch + reference.dfa_project" if rule == "dfa" else "PyTorch, B from reference"
    return [
        ("localgrad", with_localgrad),
        (pytorch_name, in_pytorch),
        (f"BioTorch {biotorch_version()}", with_biotorch),
    ]


def time_step(args, device, step) -> tuple:
    """Times one step; slow steps get fewer repeats so a row lasts about
    args.row_seconds (the count is in the row)."""
    step()  # the first call allocates and may build caches: not timed
    one = timing.time_fn(step, device, 1, warmup=0, min_repeat_s=0).median_s
    repeats = max(3, min(args.repeats, int(args.row_seconds / max(one, 1e-9))))
    t = timing.time_fn(step, device, repeats, warmup=args.warmup, min_repeat_s=args.min_repeat_s)
    return t, float(step())


def bench_steps(args, device, peaks, model_name: str, batch: int, macs: dict) -> list[dict]:
    torch.manual_seed(0)
    base = build_model(model_name, args.hidden).to(device)
    x = torch.randn(batch, N_IN, device=device)
    y = torch.randint(0, N_OUT, (batch,), device=device)
    lr = 1e-3  # small: hundreds of steps on one batch must stay finite (NaNs time differently)
    rows = []
    for rule in ["backprop", *[r for r in args.rules if r != "backprop"]]:
        for impl, make in step_variants(base, rule, x, y, lr):
            row = {"part": "step", "model": model_name, "batch": batch, "rule": rule, "implementation": impl,
                   "macs": batch * macs[rule], "bound": macs["backprop"] / macs[rule]}
            try:
                with warnings.catch_warnings():
                    # BioTorch's non-full backward hooks warn at every step;
                    # convert warns about modules it leaves alone (none here).
                    warnings.simplefilter("ignore")
                    t, last = time_step(args, device, make())
                row.update(t.as_dict())
                row["final_loss"] = last
                row["flop_floor_s"] = 2 * row["macs"] / peaks.flops
                if not math.isfinite(last):
                    row["note"] = "loss not finite: times may not be representative"
            except ImportError as exc:
                row["error"] = f"not installed ({failed(exc)}); pip install --no-deps biotorch==0.0.16"
            except Exception as exc:  # a row that cannot run says why; the others still run
                row["error"] = failed(exc)
            rows.append(row)
    bp = rows[0].get("median_s")
    for row in rows:
        if row.get("median_s"):
            row["x_flop_floor"] = row["median_s"] / row["flop_floor_s"]
            if bp:
                row["speedup_vs_backprop"] = bp / row["median_s"]
    return rows


def print_step_table(rows: list[dict], title: str, batch: int, load: float | None) -> None:
    table = []
    for r in rows:
        if "error" in r:
            table.append([r["rule"], r["implementation"], "n/a", "", "", "", f"{r['bound']:.3g}x", r["error"]])
            continue
        table.append([
            r["rule"], r["implementation"], timing.fmt_time(r["median_s"]), timing.fmt_time(r["min_s"]),
            timing.fmt_num(r.get("x_flop_floor")), timing.fmt_num(r.get("speedup_vs_backprop")) + "x",
            f"{r['bound']:.3g}x",
            (f"{r['repeats']} repeats; " if r["repeats"] < rows[0]["repeats"] else "") + r.get("note", ""),
        ])
    timing.print_table(f"Part 1, SGD step of {title}, batch {batch}, cross-entropy{load_note(load)}",
                       ["rule", "implementation", "median", "min", "x FLOP floor", "vs backprop", "bound", "note"],
                       table)


def print_macs(title: str, macs: dict, costs: list[tuple[int, int]]) -> None:
    hidden = [size for _, size in costs[:-1]]
    print(f"\n{title}: multiply-adds per sample: forward {macs['forward'] / 1e6:.4g}M; "
          f"backprop {macs['backprop'] / 1e6:.4g}M (forward + weight grads + input grads of layers 2..L); "
          f"FA family (fa, usf, brsf, frsf) the same, B in place of W: bound 1x; "
          f"DFA {macs['dfa'] / 1e6:.4g}M (forward + weight grads + projection {N_OUT}x{sum(hidden)}, "
          f"hidden outputs {'+'.join(map(str, hidden))}): bound {macs['backprop'] / macs['dfa']:.3g}x")


# ---------------------------------------------------------------------------
# Part 2: sign_feedback alone


def weight_shapes(hidden: list[int]) -> list[tuple[str, tuple[int, ...]]]:
    """The hidden layers' distinct MLP weight shapes, then LeNet's convs."""
    sizes = [N_IN, *hidden]
    shapes = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        shapes.setdefault((b, a), f"mlp fc{i + 1}")
    named = [(name, shape) for shape, name in shapes.items()]
    convs = [m for m in lenet(N_OUT) if type(m) is nn.Conv2d]
    return named + [(f"cnn conv{i + 1}", tuple(c.weight.shape)) for i, c in enumerate(convs)]


def bench_sign_feedback(args, device, peaks, name: str, shape: tuple[int, ...]) -> list[dict]:
    g = torch.Generator(device="cpu").manual_seed(0)
    w = torch.randn(shape, generator=g).to(device)
    out = torch.empty_like(w)
    s = default_bound(w)
    op = torch.ops.localgrad.sign_feedback if localgrad.has_extension() else None

    # The eager one-liners draw R from torch's own generator: not a pure
    # function of (seed, counter), so a resumed brSF run would not redraw the
    # same R. They are here for their speed only.
    variants = [
        ("usf", "fused op, into B", (lambda: op(w, 0, 0, s, False, out)) if op else None),
        ("usf", "reference.sign_feedback", lambda: reference.sign_feedback(w, 0, 0, s, False)),
        ("usf", "eager sign(W) * s", lambda: torch.sign(w) * s),
        ("random", "fused op, into B", (lambda: op(w, 7, 1, s, True, out)) if op else None),
        ("random", "reference.sign_feedback", lambda: reference.sign_feedback(w, 7, 1, s, True)),
        ("random", "eager sign(W) * rand_like(W) * s", lambda: torch.sign(w) * torch.rand_like(w) * s),
    ]
    nbytes = 2 * w.numel() * w.element_size()  # read W, write B
    floor = nbytes / peaks.bandwidth
    rows = []
    for magnitude, variant, fn in variants:
        row = {"part": "sign_feedback", "layer": name, "shape": list(shape), "magnitude": magnitude,
               "variant": variant, "bytes": nbytes, "floor_s": floor}
        if fn is None:
            row["error"] = "compiled extension not loaded"
        else:
            try:
                row.update(timing.time_fn(fn, device, args.repeats, warmup=args.warmup,
                                          min_repeat_s=args.min_repeat_s).as_dict())
            except Exception as exc:
                row["error"] = failed(exc)
        rows.append(row)
    fused = {r["magnitude"]: r.get("median_s") for r in rows if r["variant"].startswith("fused")}
    for row in rows:
        t = row.get("median_s")
        if t:
            row["x_floor"] = t / floor
            row["gbps"] = nbytes / t / 1e9
            row["vs_fused"] = t / fused[row["magnitude"]] if fused.get(row["magnitude"]) else None
    return rows


def print_sign_table(rows: list[dict], load: float | None) -> None:
    table = []
    for r in rows:
        head = [r["layer"], "x".join(map(str, r["shape"])), "uSF" if r["magnitude"] == "usf" else "|R|",
                r["variant"]]
        if "error" in r:
            table.append(head + ["n/a", "", "", "", "", "", r["error"]])
            continue
        table.append(head + [timing.fmt_time(r["median_s"]), timing.fmt_time(r["min_s"]), timing.fmt_time(r["floor_s"]),
                             timing.fmt_num(r["x_floor"]), timing.fmt_num(r["gbps"]),
                             timing.fmt_num(r.get("vs_fused")), ""])
    timing.print_table(f"Part 2, sign_feedback (B = s*sign(W) or |R|*sign(W)), fp32; floor: read W + write B at the "
                       f"measured copy bandwidth{load_note(load)}",
                       ["weight", "shape", "B", "variant", "median", "min", "floor", "x floor", "GB/s", "vs fused",
                        "note"], table)


# ---------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    device, env = timing.start(args, f"; BioTorch {biotorch_version()}")
    args.warmup = 1 if args.quick else 3
    # A repeat of a microsecond op runs many calls, so the clock's resolution
    # and the timer's own overhead stay out of the figure.
    args.min_repeat_s = 0.0 if args.quick else (0.005 if device.type == "cuda" else 0.02)
    if args.quick:
        args.row_seconds = min(args.row_seconds, 0.5)

    whole_run = timing.OtherLoad()
    print(f"timing: median and min per call over up to {args.repeats} loops (fewer when a step row would "
          f"pass {args.row_seconds:g} s), after {args.warmup} warm-up calls")

    peaks = timing.report_peaks(device, args.quick)

    rows: list[dict] = []
    all_macs = {}
    for model_name in args.models:
        title = model_title(model_name, args.hidden)
        model = build_model(model_name, args.hidden)
        costs = layer_costs(model, torch.zeros(1, N_IN))
        macs = rule_macs(costs)
        all_macs[model_name] = {**macs, "layers": costs}
        print_macs(title, macs, costs)
        for batch in args.batches:
            load = timing.OtherLoad()
            step_rows = bench_steps(args, device, peaks, model_name, batch, macs)
            for row in step_rows:
                row["other_load"] = load.fraction()
            print_step_table(step_rows, title, batch, step_rows[0]["other_load"])
            rows += step_rows

    load = timing.OtherLoad()
    sign_rows = []
    for name, shape in weight_shapes(args.hidden):
        sign_rows += bench_sign_feedback(args, device, peaks, name, shape)
    for row in sign_rows:
        row["other_load"] = load.fraction()
    print_sign_table(sign_rows, load.fraction())
    rows += sign_rows

    other = whole_run.fraction()
    timing.print_other_load(other)
    if args.json:
        timing.write_json(args.json, {
            "benchmark": "fa_family",
            **env,
            "biotorch": biotorch_version(),
            "args": timing.args_record(args),
            "peaks": peaks.as_dict(),
            "other_load": other,
            "macs_per_sample": all_macs,
            "rows": rows,
        })
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
