"""Peak memory of one training step, for the benchmarks of the forward-only
rules (whose claim is memory).

CPU: each measurement runs in a fresh spawned process, with glibc's mmap
threshold fixed at 64 KiB (every tensor of note is then mapped on
allocation and unmapped on free, so the resident set follows the live
tensors). After a warm-up step (which allocates `.grad` and the optimizer's
state), the peak resident set is reset (/proc/self/clear_refs) and the
step's peak is VmHWM minus the resident set before it: what the step
allocates and frees (activations, tangents, graphs). tracemalloc cannot see
torch's tensors (they are not Python allocations). CUDA:
torch.cuda.max_memory_allocated over the step minus what was allocated
before it."""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import resource
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F

# Beside _timing.py, in a checkout or in the wheel's localgrad.benchmarks alike.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing as timing  # noqa: E402


def mlp_and_batch(net, batch: int, device):
    """The forward-only benchmarks' subject: a seeded ReLU MLP of widths
    `net` on `device`, and one random batch (x, class labels) for it."""
    torch.manual_seed(0)
    device = torch.device(device)
    model = timing.relu_mlp(net).to(device)
    x = torch.randn(batch, net[0], device=device)
    return model, x, torch.randint(0, net[-1], (batch,), device=device)


def print_rows(title: str, rows: list[dict], columns: tuple = ()) -> None:
    """Each method's time and peak memory per step, and both against the
    first row's (backprop's); `columns`: (header, key) of extra columns."""
    base = rows[0]

    def ratio(r, key):
        return f"{r[key] / max(base[key], 1e-30):.2f}" if key in r and key in base else ""

    timing.print_table(title, ["method", *(h for h, _ in columns), "ms / step", "x backprop", "peak MiB",
                               "x backprop mem"],
                       [[r["method"], *(str(r[k]) for _, k in columns),
                         f"{1e3 * r['step_s']:.2f}" if "step_s" in r else r.get("error", ""), ratio(r, "step_s"),
                         f"{r['peak_bytes'] / 2**20:.2f}" if "peak_bytes" in r else "", ratio(r, "peak_bytes")]
                        for r in rows])


def backprop_step(model, x, y) -> Callable[[], None]:
    """One step of the baseline: cross-entropy's gradient by autograd into .grad."""
    def step():
        model.zero_grad(set_to_none=False)
        F.cross_entropy(model(x), y).backward()
    return step


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _hwm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _cpu_child(make_step, args, queue):
    torch.set_num_threads(1)
    step = make_step(*args)
    step()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    base = _rss_bytes()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident set
    step()
    queue.put(_hwm_bytes() - base)


def step_peak_bytes(make_step: Callable, args: tuple, device: torch.device) -> int:
    """The transient peak of one `make_step(*args)()` (one training step).
    make_step must be a module-level function: on CPU it is pickled into a
    spawned process."""
    if device.type == "cuda":
        step = make_step(*args)
        step()
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_cpu_child, args=(make_step, args, queue))
    proc.start()
    value = queue.get(timeout=600)
    proc.join()
    return value
