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
from collections.abc import Callable

import torch


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
