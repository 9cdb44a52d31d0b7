"""Forward-Forward benchmark: one training step's update of every layer
(positive and negative pass), the fused `forward_forward_step` op against the
paper's loop written in eager PyTorch and against the float64 reference, with
backprop's step on the same net beside them; and each method's peak memory
per step, measured in a fresh process.

    python benchmarks/bench_forward_forward.py [--device cpu|cuda] [--nets 784-2000-2000-2000-2000,...]
        [--batches 256,...] [--repeats N] [--threads N] [--json PATH] [--quick] [--no-memory]

Eager is what the public re-implementations do for each layer and batch
(Hinton's section 3.3 supervised MNIST net; the common PyTorch ports): the
length normalisation, the forward product of each pass, the goodness, the
logistic loss and autograd's backward through that one layer, then the
detached output to the next layer: about 12 launches and a saved graph per
layer. The fused op runs both passes in one product per layer, one row pass,
and the weight gradient's product. The floor is the op's GEMM FLOPs (forward
and weight gradient of both passes) at the GEMM rate measured in the same run.
Backprop's step is the same net with a 10-way linear output, cross-entropy,
one forward and backward (a different algorithm, for scale: FF sends two
batches through every layer).

Memory (peak per step, after a warm-up step): CPU, the growth of the
process's peak resident set over the step (VmHWM, reset just before it),
each method in its own process; CUDA, torch.cuda.max_memory_allocated over the step. The model,
data and optimizer state are allocated before and not counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing as timing  # noqa: E402

from localgrad import ops  # noqa: E402
from localgrad.reference import forward_forward as ref  # noqa: E402

EPS = 1e-8
RELU = 2


def rms(h):
    return h / (h.pow(2).mean(1, keepdim=True).sqrt() + EPS)


def eager_step(x_pos, x_neg, weights, biases, thresholds):
    """The paper's loop, layer by layer, each layer's own loss through autograd."""
    grads = []
    h_pos, h_neg = x_pos, x_neg
    for w, b, theta in zip(weights, biases, thresholds):
        w, b = w.detach().requires_grad_(), b.detach().requires_grad_()
        a_pos = F.relu(F.linear(rms(h_pos), w, b))
        a_neg = F.relu(F.linear(rms(h_neg), w, b))
        loss = (F.softplus(-(a_pos.pow(2).sum(1) - theta)) + F.softplus(a_neg.pow(2).sum(1) - theta)).mean()
        grads += torch.autograd.grad(loss, [w, b])
        h_pos, h_neg = a_pos.detach(), a_neg.detach()
    return grads


def make(net, batch, device, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x_pos = torch.rand(batch, net[0], generator=g).to(device=device, dtype=dtype)
    x_neg = torch.rand(batch, net[0], generator=g).to(device=device, dtype=dtype)
    weights = [(torch.randn(net[i + 1], net[i], generator=g) / net[i] ** 0.5).to(device=device, dtype=dtype)
               for i in range(len(net) - 1)]
    biases = [torch.zeros(net[i + 1], device=device, dtype=dtype) for i in range(len(net) - 1)]
    return x_pos, x_neg, weights, biases, [float(n) for n in net[1:]]


def backprop_model(net, device):
    layers = []
    for i in range(len(net) - 1):
        layers += [torch.nn.Linear(net[i], net[i + 1]), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(net[-1], 10)).to(device)


def methods(net, batch, device):
    """name -> a zero-argument step on fresh data of this shape."""
    x_pos, x_neg, weights, biases, thresholds = make(net, batch, device)
    kinds, slopes = [RELU] * len(weights), [0.0] * len(weights)
    gw = [torch.empty_like(w) for w in weights]
    gb = [torch.empty_like(b) for b in biases]
    good = x_pos.new_empty(len(weights), 2, batch)
    losses = x_pos.new_empty(len(weights))
    model = backprop_model(net, device)
    for q in model.parameters():  # allocated up front, as the op's outputs are
        q.grad = torch.zeros_like(q)
    y = torch.randint(0, 10, (batch,), device=device)

    def backprop():
        model.zero_grad(set_to_none=False)
        F.cross_entropy(model(x_pos), y).backward()

    return {
        "fused": lambda: ops.forward_forward_step(x_pos, x_neg, weights, biases, kinds, slopes, thresholds, "sumsq",
                                                  "threshold", "rms", 1.0, EPS, gw, gb, good, losses),
        "eager": lambda: eager_step(x_pos, x_neg, weights, biases, thresholds),
        "backprop": backprop,
    }


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(method, net, batch, device_name):
    """Prints the peak bytes one step of `method` adds (see the docstring)."""
    device = timing.resolve_device(device_name)
    # Warm-up on a tiny batch: code, thread pools and CUDA context exist from
    # here on. ru_maxrss never falls, so the measured step must be the first
    # of its size.
    methods(net, 2, device)[method]()
    step = methods(net, batch, device)[method]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        print(json.dumps({"peak_bytes": torch.cuda.max_memory_allocated(device) - base}))
        return
    # Linux resets the process's high-water mark (VmHWM) on "5" to clear_refs:
    # ru_maxrss would hold the peak of torch's import, above any step's.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status_bytes("VmRSS")
    step()
    print(json.dumps({"peak_bytes": max(0, _status_bytes("VmHWM") - base)}))


def peak_memory(method, net, batch, device) -> float | None:
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", method, "--nets", "-".join(map(str, net)),
           "--batches", str(batch), "--device", device.type]
    # A fixed mmap threshold: every large tensor gets fresh pages and gives
    # them back when freed. glibc's adaptive threshold would otherwise serve
    # the step from heap pages the setup's temporaries left resident (the
    # step would look free).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    if done.returncode != 0:
        print(f"memory of {method} failed: {done.stderr[-500:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_bytes"]


def main(argv=None) -> int:
    p = timing.benchmark_parser(__doc__, repeats_default=7, repeats_default_help="7; 1 with --quick",
                                quick_help="tiny shapes, one repeat: a smoke run")
    p.add_argument("--nets", type=timing.parse_nets, default=None,
                   help="layer widths, comma-separated nets (default 784-2000-2000-2000-2000, 784-500-500)")
    p.add_argument("--batches", type=timing.parse_ints, default=None, help="batch sizes (default 256,1024)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    p.add_argument("--memory-child", default=None, help=argparse_hidden())
    args = p.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child, args.nets[0], args.batches[0], args.device)
        return 0
    device, env = timing.start(args)
    nets = args.nets or ([[20, 16, 12]] if args.quick else [[784, 2000, 2000, 2000, 2000], [784, 500, 500]])
    batches = args.batches or ([8] if args.quick else [256, 1024])
    repeats = 1 if args.quick else args.repeats
    load = timing.OtherLoad()
    peaks = timing.measure_peaks(device, quick=args.quick)
    timing.print_peaks(peaks)

    rows, table = [], []
    for net in nets:
        for batch in batches:
            steps = methods(net, batch, device)
            fused = timing.time_fn(steps["fused"], device, repeats)
            eager = timing.time_fn(steps["eager"], device, repeats)
            backprop = timing.time_fn(steps["backprop"], device, repeats)
            x_pos, x_neg, weights, biases, thresholds = make(net, batch, device, torch.float64)
            kinds, slopes = [RELU] * len(weights), [0.0] * len(weights)
            reference = timing.time_fn(lambda: ref.step(x_pos, x_neg, weights, biases, kinds, slopes, "sumsq",
                                                        "threshold",
                                                        thresholds, 1.0, "rms", EPS), device, max(1, repeats // 2),
                                       min_repeat_s=0)
            # The eager loop and the op agree (float32): a benchmark of different maths would mean nothing.
            xp, xn, w32, b32, th = make(net, batch, device)
            eg = eager_step(xp, xn, w32, b32, th)
            gw, gb, _, _ = ops.forward_forward_step(xp, xn, w32, b32, kinds, slopes, th, "sumsq", "threshold", "rms",
                                                    1.0, EPS)
            agree = max(((a - e).abs().max() / e.abs().max().clamp_min(1e-30)).item()
                        for a, e in zip([x for pair in zip(gw, gb) for x in pair], eg))
            flops = sum(2 * 2 * (2 * batch) * n * m for n, m in zip(net[:-1], net[1:]))
            nbytes = 4 * (2 * batch * net[0] + sum(2 * n * m + 4 * batch * m for n, m in zip(net[:-1], net[1:])))
            floor = peaks.floor_s(flops, nbytes)
            memory = {} if args.no_memory else {m: peak_memory(m, net, batch, device)
                                                for m in ("fused", "eager", "backprop")}
            row = {
                "net": net, "batch": batch, "fused": fused.as_dict(), "eager": eager.as_dict(),
                "backprop": backprop.as_dict(), "reference_float64": reference.as_dict(),
                "eager_over_fused": eager.median_s / fused.median_s,
                "reference_over_fused": reference.median_s / fused.median_s,
                "backprop_over_fused": backprop.median_s / fused.median_s,
                "fused_over_floor": fused.median_s / floor, "max_rel_diff_vs_eager": agree,
                "peak_step_bytes": memory,
            }
            rows.append(row)
            mib = {m: "-" if v is None else f"{v / 2**20:.1f}" for m, v in memory.items()}
            table.append(["-".join(map(str, net)), str(batch), timing.fmt_time(fused.median_s),
                          timing.fmt_time(eager.median_s),
                          timing.fmt_time(reference.median_s), timing.fmt_time(backprop.median_s),
                          timing.fmt_num(row["eager_over_fused"]), timing.fmt_num(row["fused_over_floor"]),
                          f"{agree:.1e}",
                          " / ".join(mib.get(m, "-") for m in ("fused", "eager", "backprop"))])
    timing.print_table("one step's update of every layer (median)",
                       ["net", "batch", "fused", "eager", "reference f64", "backprop", "eager / fused", "fused / floor",
                        "rel diff", "peak MiB fused / eager / bp"], table)
    other = load.fraction()
    if other is not None:
        print(f"\nother processes used {100 * other:.0f}% of the CPUs during the run")
    if args.json:
        timing.write_json(args.json, {"environment": env, "peaks": peaks.as_dict(), "other_load": other, "rows": rows})
    return 0


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
