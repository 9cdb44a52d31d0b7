"""Every registered rule: one training step through the Learner API, side by
side with backprop on the same model.

    python benchmarks/bench_rules.py [--device cpu|cuda] [--rules fa,dfa,...]
        [--batch 128] [--hidden 256] [--steps 28] [--repeats N] [--threads N]
        [--json PATH] [--quick]

The rules come from `localgrad.rules()`, nothing else: a rule added to the
registry appears here without an edit. Static rules train a stock MLP
784-H-H-10 (ReLU) on a batch of random images; sequence rules train a
(batch, T, 28) batch of sequences with the first network the rule accepts of
a leaky RNN and a LIF network (28-H-10; H/4 hidden units, because RTRL's
trace is H x H^2 per sample). A step is `opt.zero_grad(); learner.step(x, y);
opt.step()` with SGD, the loop every rule shares. Each row reports the
median time per step and its ratio to the registry's exact-gradient rule
(`rule_info(name).baseline`: backprop, or BPTT of the same recurrent or
spiking network) timed in the same run; a rule that refuses the model says
so instead of a time.

This measures the whole user-visible step (checks, the rule's phases, the
optimizer), not an op: the per-family scripts (bench_<family>.py) time the
fused ops against their references and floors.
"""

from __future__ import annotations

import os
import sys
import warnings

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing as timing  # noqa: E402

import localgrad  # noqa: E402
from localgrad import online  # noqa: E402

def static_model(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), *timing.relu_mlp([784, hidden, hidden, 10]))


def sequence_models(hidden: int):
    """The candidate networks of a sequence rule, in the order tried."""
    return (lambda: online.LeakyRNN(28, hidden, 10, alpha=0.5),
            lambda: online.LIF(28, hidden, 10, tau_m=5.0, weight_scale=2.0))


def candidates(inputs: str, args):
    return (lambda: static_model(args.hidden),) if inputs == "static" else sequence_models(args.hidden // 4)


def build(rule: str, args, device, only: int | None = None):
    """(model, learner, index of the candidate model), or (None, the refusal's
    message, None): the first candidate model the rule accepts."""
    refusal = None
    for i, make in enumerate(candidates(localgrad.rule_info(rule).inputs, args)):
        if only is not None and i != only:
            continue
        torch.manual_seed(0)
        model = make().to(device)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return model, localgrad.learner(model, rule, seed=0), i
        except localgrad.UnsupportedModelError as e:
            refusal = str(e)
    return None, refusal, None


def batch_for(inputs: str, args, device):
    g = torch.Generator().manual_seed(1)
    if inputs == "static":
        x = torch.rand(args.batch, 1, 28, 28, generator=g)
    else:
        x = (torch.rand(args.batch, args.steps, 28, generator=g) < 0.3).float()  # spikes or rates alike
    return x.to(device), torch.randint(0, 10, (args.batch,), generator=g).to(device)


def time_rule(rule: str, args, device, only: int | None = None):
    """(Timing or None, refusal or None, index of the candidate model)."""
    model, learner, kind = build(rule, args, device, only)
    if model is None:
        return None, learner, None
    x, y = batch_for(localgrad.rule_info(rule).inputs, args, device)
    opt = torch.optim.SGD([*model.parameters(), *learner.parameters()], lr=1e-3)

    def step():
        opt.zero_grad()
        learner.step(x, y)
        opt.step()

    try:
        return timing.time_fn(step, device, args.repeats, warmup=1 if args.quick else 2), None, kind
    except (RuntimeError, ValueError) as e:  # a rule that refuses the run (not the model) at its first step
        return None, f"{type(e).__name__}: {e}", kind


def baseline_for(inputs: str, kind: int, args, device, cache: dict):
    """(name, Timing) of the registry's exact-gradient rule on the same
    candidate model (backprop; BPTT of the RNN or of the spiking network)."""
    if (inputs, kind) not in cache:
        cache[inputs, kind] = None, None
        for name in localgrad.rules(inputs=inputs):
            if localgrad.rule_info(name).baseline:
                measured, _, _ = time_rule(name, args, device, only=kind)
                if measured is not None:
                    cache[inputs, kind] = name, measured
                    break
    return cache[inputs, kind]


def main(argv=None) -> int:
    p = timing.benchmark_parser(__doc__, repeats_default=None, repeats_default_help="5; 1 with --quick")
    p.add_argument("--rules", default=None, help="comma-separated registered rules (default: all)")
    p.add_argument("--batch", type=int, default=None, help="default 128; 8 with --quick")
    p.add_argument("--hidden", type=int, default=None, help="default 256; 16 with --quick")
    p.add_argument("--steps", type=int, default=None, help="time steps of a sequence (default 28; 4 with --quick)")
    args = p.parse_args(argv)
    args.batch = args.batch or (8 if args.quick else 128)
    args.hidden = args.hidden or (16 if args.quick else 256)
    args.steps = args.steps or (4 if args.quick else 28)
    args.repeats = args.repeats or (1 if args.quick else 5)
    device, env = timing.start(args)
    rules = args.rules.split(",") if args.rules else localgrad.rules()
    unknown = sorted(set(rules) - set(localgrad.rules()))
    if unknown:
        raise SystemExit(f"--rules: not registered: {', '.join(unknown)}")
    load = timing.OtherLoad()

    rows, table, baselines = [], [], {}
    for rule in rules:
        info = localgrad.rule_info(rule)
        inputs = info.inputs
        measured, refusal, kind = time_rule(rule, args, device)
        base, base_timing = baseline_for(inputs, kind, args, device, baselines) if measured else (None, None)
        if base == rule:
            measured = base_timing  # one measurement of the baseline, the one the ratios divide by
        ratio = measured.median_s / base_timing.median_s if measured and base_timing else None
        rows.append({"rule": rule, "family": info.family, "inputs": inputs, "baseline": base,
                     "timing": measured.as_dict() if measured else None, "vs_baseline": ratio, "refused": refusal})
        table.append([rule, info.family, timing.fmt_time(measured.median_s) if measured else "refuses",
                      f"{timing.fmt_num(ratio)}x {base}" if ratio else (refusal or "")[:70]])
    timing.print_table(f"one training step per rule (batch {args.batch}, hidden {args.hidden}, T {args.steps})",
                       ["rule", "family", "median step", "vs baseline"], table)
    timing.finish(args, load, {"benchmark": "rules", "environment": env, "args": timing.args_record(args),
                               "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
