"""Target-propagation benchmark: a whole training step of DTP and L-DRL (and,
cheaply, TP, DDTP, GAIT) against backprop, against an eager
re-implementation of the published loop, and against localgrad's reference.

    python benchmarks/bench_target_prop.py [--device cpu|cuda] [--batches 64]
        [--net 784-256-256-10] [--iterations 20] [--samples 10]
        [--repeats N] [--threads N] [--json PATH] [--quick]

The model is the demo's ReLU MLP (localgrad.experiments.demo.mlp, 784-256-256-10). One
step = the feedback training of every layer-wise map, then the targets and
the forward weights' update, then the optimizers' steps (Adam 1e-3 on the
forward weights as in the demo; SGD with momentum 0.9 on the feedback, as
Ernoult et al.'s code). Three feedback schedules, each timed for every
implementation:

  demo        1 feedback update per batch, 1 noise sample (localgrad demo's rows)
  sequential  K feedback iterations per layer per batch, 1 noise sample each:
              Ernoult et al. 2022's sequential DTP/L-DRL (CIFAR-10: 20, 30, 35,
              55, 20 iterations for its 5 layers; the MLP's 2 trained feedback
              maps take the list's smallest, K = 20 each, --iterations)
  parallel    1 feedback update per batch averaging S noise samples: their
              layer-parallel model (S = 10, --samples)

Implementations:

  localgrad   TargetProp.step (after train_feedback(x, optimizer, K - 1)),
              feedback="gated"; the S samples stacked into one product, and
              for the gated maps the feedback gradient in closed form (the
              fused op localgrad.ops.target_prop_feedback_grads where built)
  reference   the same learner with closed_form = False: the feedback losses
              of localgrad.reference.target_prop through autograd
  eager       written here, labelled "published loop (eager re-impl.)": what
              the papers' code runs (Ernoult et al. 2022 scalingDTP's
              sequential model; Meulemans et al. 2020's per-layer feedback
              training): per layer, K iterations, each a Python loop over the
              S noise samples with autograd's backward per sample, the
              papers' feedback form g(h) = s(V h + c), an SGD step per
              iteration; then the targets and an autograd backward of the
              per-layer forward losses. Our re-implementation, not their code.

The floor is the step's matrix products at the GEMM rate measured now
(forward, the feedback products per iteration and sample, the targets'
one product per map, the weight gradients); elementwise work is not counted.
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

from localgrad.experiments.demo import mlp  # noqa: E402
from localgrad.target_prop import TargetProp  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = timing.benchmark_parser(__doc__, repeats_default_help="5")
    p.add_argument("--batches", type=timing.parse_ints, default=None, help="comma-separated (default 64)")
    p.add_argument("--net", default=None, help="widths joined by '-' (default 784-256-256-10, the demo's)")
    p.add_argument("--iterations", type=int, default=None, help="K of the sequential schedule (default 20)")
    p.add_argument("--samples", type=int, default=None, help="S of the parallel schedule (default 10)")
    args = p.parse_args(argv)
    if args.quick:
        args.batches = args.batches or [8]
        args.net = args.net or "32-16-16-4"
        args.iterations = args.iterations or 2
        args.samples = args.samples or 2
        args.repeats = args.repeats or 1
    args.batches = args.batches or [64]
    args.sizes = [int(n) for n in (args.net or "784-256-256-10").split("-")]
    args.iterations = args.iterations or 20
    args.samples = args.samples or 10
    args.repeats = args.repeats or 5
    return args


def schedules(args) -> list[tuple[str, int, int]]:
    """(name, feedback iterations per layer per batch, noise samples per iteration)."""
    return [("demo", 1, 1), ("sequential", args.iterations, 1), ("parallel", 1, args.samples)]


def make_data(sizes, batch, device):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(batch, sizes[0], generator=g).to(device)
    y = torch.randint(0, sizes[-1], (batch,), generator=g).to(device)
    return x, y


# --- the published loop, re-implemented eagerly (ours, labelled as such) -------------------------


class EagerPublishedDTP:
    """Per-layer feedback training as Ernoult et al. 2022's sequential model
    and Meulemans et al. 2020's code run it: g_l(h) = s_{l-1}(V_l h + c_l) an
    nn.Linear and the activation, per layer K iterations, a Python loop over
    the S noise samples with a backward per sample (the loss their mean), an
    SGD step per iteration; then the targets t_{l-1} = h_{l-1} + g(t_l) - g(h_l)
    under no_grad and one autograd backward of the per-layer losses."""

    def __init__(self, model: nn.Sequential, variant: str, beta: float, noise: float, iterations: int, samples: int):
        self.model, self.variant, self.beta, self.noise = model, variant, beta, noise
        self.iterations, self.samples = iterations, samples
        self.linears = [m for m in model if isinstance(m, nn.Linear)]
        n = len(self.linears)
        dev = self.linears[0].weight.device
        # g_l for l = 2..L; g_l reconstructs h_{l-1}, which a ReLU made (every hidden layer here).
        self.feedback = nn.ModuleList([nn.Linear(m.out_features, m.in_features) for m in self.linears[1:]]).to(dev)
        self.fb_act = [torch.relu] * (n - 1)
        self.fb_optimizers = [torch.optim.SGD(g.parameters(), lr=1e-4, momentum=0.9) for g in self.feedback]

    def _layer(self, l: int, h: torch.Tensor) -> torch.Tensor:  # f_l, l = 1..L
        a = self.linears[l - 1](h)
        return a if l == len(self.linears) else torch.relu(a)

    def _g(self, l: int, h: torch.Tensor) -> torch.Tensor:
        return self.fb_act[l - 2](self.feedback[l - 2](h))

    def _feedback_loss(self, l: int, h_in: torch.Tensor, h_out: torch.Tensor) -> torch.Tensor:
        eps = self.noise * torch.randn_like(h_in)
        if self.variant == "dtp":
            x = h_in + eps
            return (self._g(l, self._layer(l, x)) - x).pow(2).sum(1).mean()
        g0 = self._g(l, h_out)
        eta = self.noise * torch.randn_like(h_out)
        term1 = -2 * (eps * (self._g(l, self._layer(l, h_in + eps)) - g0)).sum(1).mean()
        term2 = (self._g(l, h_out + eta) - g0).pow(2).sum(1).mean()
        return term1 + term2

    def step(self, x: torch.Tensor, y: torch.Tensor, optimizer) -> None:
        with torch.no_grad():
            hs = [x]
            for l in range(1, len(self.linears) + 1):
                hs.append(self._layer(l, hs[-1]))
        for l in range(2, len(self.linears) + 1):
            opt = self.fb_optimizers[l - 2]
            for _ in range(self.iterations):
                opt.zero_grad()
                for _ in range(self.samples):  # the published Python loop over noise samples
                    (self._feedback_loss(l, hs[l - 1], hs[l]) / self.samples).backward()
                opt.step()
        # Forward: output target from the loss gradient, targets down, per-layer losses.
        out = hs[-1].detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(out, y, reduction="sum"), out)
        targets = [None] * len(self.linears)
        targets[-1] = hs[-1] - self.beta * grad
        with torch.no_grad():
            for l in range(len(self.linears), 1, -1):
                targets[l - 2] = hs[l - 1] + self._g(l, targets[l - 1]) - self._g(l, hs[l])
        optimizer.zero_grad()
        loss = sum(0.5 * (self._layer(l, hs[l - 1]) - targets[l - 1]).pow(2).sum(1).mean() / self.beta
                   for l in range(1, len(self.linears) + 1))
        loss.backward()
        optimizer.step()


# --- FLOP floors ------------------------------------------------------------------------------------


def backprop_flops(sizes, batch) -> float:
    return 3 * 2 * batch * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def tp_flops(sizes, batch, variant, iterations, samples) -> float:
    """The step's matrix products (closed-form feedback gradients): forward;
    per feedback map and iteration f(x + eps), then dtp: u V^T and r^T u,
    ldrl: P V^T, (P V^T)^T P and eps^T Q, on S B rows; the targets (for
    linear maps one product of the difference, ((t - h) q) V^T, on B rows)
    and the forward weight gradients."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    forward = 2 * batch * sum(a * b for a, b in pairs)
    per_map = {"dtp": 3, "tp": 3, "ldrl": 4}.get(variant, 0)
    fb = iterations * samples * batch * 2 * per_map * sum(a * b for a, b in pairs[1:])
    targets = 2 * batch * sum(a * b for a, b in pairs[1:])
    return 2 * forward + fb + targets  # forward pass + weight gradients (same size) + the rest


# --- rows ---------------------------------------------------------------------------------------------


def time_localgrad(model, x, y, variant, iterations, samples, closed_form, device, repeats, feedback="gated"):
    kwargs = {"feedback": feedback} if variant in ("tp", "dtp", "ldrl") else {}
    learner = TargetProp(model, variant=variant, beta=0.1, noise=0.1, loss="ce", samples=samples, **kwargs)
    learner.closed_form = closed_form
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    fb = learner.feedback_parameters()
    fb_opt = torch.optim.SGD(fb, lr=1e-4, momentum=0.9) if fb else None

    def step():
        if iterations > 1:  # K - 1 feedback updates on this batch, one forward pass, then the step's own
            learner.train_feedback(x, fb_opt, iterations - 1)
        opt.zero_grad()
        if fb_opt is not None:
            fb_opt.zero_grad()
        learner.step(x, y)
        opt.step()
        if fb_opt is not None:
            fb_opt.step()

    return timing.time_fn(step, device, repeats)


def run(args, device, peaks, results):
    rows = []
    sizes = args.sizes
    net = "-".join(map(str, sizes))
    for batch in args.batches:
        x, y = make_data(sizes, batch, device)
        torch.manual_seed(0)
        model = mlp(sizes).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def backprop():
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()

        t_bp = timing.time_fn(backprop, device, args.repeats).min_s
        floor_bp = peaks.floor_s(backprop_flops(sizes, batch), 0)
        results.append(dict(net=net, batch=batch, rule="backprop", implementation="autograd", schedule="-",
                            iterations=0, samples=0, step_s=t_bp, backprop_s=t_bp, floor_s=floor_bp))
        rows.append([net, batch, "backprop", "-", "autograd", timing.fmt_time(t_bp), "1",
                     timing.fmt_num(floor_bp / t_bp, 2)])

        def add(rule, schedule, k, s, impl, seconds, floor):
            results.append(dict(net=net, batch=batch, rule=rule, implementation=impl, schedule=schedule,
                                iterations=k, samples=s, step_s=seconds, backprop_s=t_bp, floor_s=floor))
            rows.append([net, batch, rule, f"{schedule} (K={k}, S={s})", impl, timing.fmt_time(seconds),
                         timing.fmt_num(seconds / t_bp), timing.fmt_num(floor / seconds, 2)])

        for variant in ("dtp", "ldrl"):
            for schedule, k, s in schedules(args):
                floor = peaks.floor_s(tp_flops(sizes, batch, variant, k, s), 0)
                for impl, closed in (("localgrad", True), ("reference", False)):
                    torch.manual_seed(0)
                    model_l = mlp(sizes).to(device)
                    t = time_localgrad(model_l, x, y, variant, k, s, closed, device, args.repeats).min_s
                    add(variant, schedule, k, s, impl + " (gated)", t, floor)
                torch.manual_seed(0)
                model_e = mlp(sizes).to(device)
                opt_e = torch.optim.Adam(model_e.parameters(), lr=1e-3)
                eager = EagerPublishedDTP(model_e, variant, 0.1, 0.1, k, s)
                t = timing.time_fn(lambda: eager.step(x, y, opt_e), device, args.repeats).min_s
                add(variant, schedule, k, s, "published loop (eager re-impl.)", t, floor)
        # The other variants, demo schedule only.
        for variant in ("tp", "ddtp", "gait"):
            torch.manual_seed(0)
            model_v = mlp(sizes).to(device) if variant != "gait" else gait_mlp(sizes).to(device)
            floor = peaks.floor_s(tp_flops(sizes if variant != "gait" else gait_sizes(sizes), batch, variant, 1, 1), 0)
            for impl, closed in (("localgrad", True), ("reference", False)):
                t = time_localgrad(model_v, x, y, variant, 1, 1, closed, device, args.repeats).min_s
                add(variant, "demo", 1, 1, impl + (" (gated)" if variant == "tp" else ""), t, floor)
    timing.print_table("One training step (feedback training, targets, forward update, optimizer steps), best of the "
                       "repeats", ["net", "batch", "rule", "schedule", "implementation", "step", "x backprop",
                                   "floor/step"], rows)


def gait_sizes(sizes):
    return [sizes[0]] + [sizes[1]] * (len(sizes) - 1)


def gait_mlp(sizes) -> nn.Sequential:
    """The demo's GAIT row: square layers after the first (LeakyReLU 0.1)."""
    s = gait_sizes(sizes)
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(s[:-1], s[1:])):
        layers.append(nn.Linear(a, b))
        if i:
            nn.init.orthogonal_(layers[-1].weight)
        if i < len(s) - 2:
            layers.append(nn.LeakyReLU(0.1))
    return nn.Sequential(*layers)


def main(argv=None) -> int:
    args = parse_args(argv)
    device, env = timing.start(args)
    load = timing.OtherLoad()
    peaks = timing.report_peaks(device, args.quick)
    print(f"schedules: {', '.join(f'{n} K={k} S={s}' for n, k, s in schedules(args))}")
    results: list[dict] = []
    run(args, device, peaks, results)
    other = load.fraction()
    if other is not None:
        print(f"\nother processes used {100 * other:.0f}% of the CPUs' time during the run")
    if args.json:
        timing.write_json(args.json, {"benchmark": "target_prop", "environment": env, "peaks": peaks.as_dict(),
                                      "args": timing.args_record(args), "rows": results,
                                      "other_load": other})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
