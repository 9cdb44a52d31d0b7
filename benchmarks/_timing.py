"""Shared pieces of localgrad's benchmarks: timing, the device's measured
peaks, aligned tables, the JSON record, and the plain MLP most of them time.

Benchmarks are scripts, never timed tests: nothing here asserts on a time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch

# Called after every time_fn measurement: `localgrad bench` sets it to advance
# its progress bar. Scripts run alone leave it None.
progress_hook: Callable[[], object] | None = None


def benchmark_parser(
    doc: str,
    *,
    repeats_default_help: str,
    repeats_default: int | None = None,
    quick_help: str = "tiny sizes, few repeats: a smoke run",
) -> argparse.ArgumentParser:
    """The options every benchmark shares, so that `localgrad bench` can pass
    --device, --repeats, --threads, --json and --quick to any family.

    `doc` is the script's docstring; its first paragraph describes the parser.
    Most scripts leave `repeats_default` None and pick the count after parsing,
    because it depends on --quick; `repeats_default_help` says what they pick.
    """
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda if available")
    p.add_argument("--repeats", type=int, default=repeats_default,
                   help=f"timed loops per row (default {repeats_default_help})")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--json", metavar="PATH", help="write every row and the environment here")
    p.add_argument("--quick", action="store_true", help=quick_help)
    return p


def setup_device(args: argparse.Namespace) -> torch.device:
    """Applies --threads and --device. Threads first: environment() records
    the count, and a script's first torch call should already see it."""
    if args.threads:
        torch.set_num_threads(args.threads)
    return resolve_device(args.device)


def start(args: argparse.Namespace, extra: str = "") -> tuple[torch.device, dict]:
    """setup_device, then the environment record and its printed lines, which
    every benchmark's output opens with."""
    device = setup_device(args)
    env = environment(device)
    print_environment(env, device, extra)
    return device, env


def resolve_device(name: str | None) -> torch.device:
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA GPU here")
    return device


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass
class Timing:
    median_s: float  # per call
    min_s: float
    repeats: int
    calls_per_repeat: int

    def as_dict(self) -> dict:
        return asdict(self)


def _time_loop(fn: Callable[[], object], device: torch.device, calls: int) -> float:
    """Seconds for `calls` back-to-back calls, the device drained at both ends."""
    if device.type == "cuda":
        # Events time the GPU's own work; the host may run ahead of it.
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        synchronize(device)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    synchronize(device)
    return time.perf_counter() - t0


def time_fn(
    fn: Callable[[], object],
    device: torch.device,
    repeats: int,
    warmup: int = 3,
    min_repeat_s: float = 0.01,
) -> Timing:
    """Median and min per-call time over `repeats` timed loops.

    Each loop runs enough calls to last about `min_repeat_s`, so that a
    microsecond op is not timed against the clock's and the launch's overhead.
    """
    for _ in range(warmup):
        fn()
    calls = 1
    if min_repeat_s > 0:
        one = _time_loop(fn, device, 1)
        calls = max(1, min(10_000, math.ceil(min_repeat_s / max(one, 1e-9))))
    per_call = [_time_loop(fn, device, calls) / calls for _ in range(max(1, repeats))]
    if progress_hook is not None:
        progress_hook()
    return Timing(statistics.median(per_call), min(per_call), len(per_call), calls)


@dataclass
class Peaks:
    """What this device achieves, measured in the same run as the benchmark, so
    that "x floor" compares against this machine and not a data sheet."""

    flops: float  # fp32 FLOP/s of a large square matmul
    bandwidth: float  # bytes/s of a large copy, read + write counted
    gemm_n: int
    copy_bytes: int

    def floor_s(self, flops: float, nbytes: float) -> float:
        return max(flops / self.flops, nbytes / self.bandwidth)

    def as_dict(self) -> dict:
        return asdict(self)


def measure_peaks(device: torch.device, quick: bool = False, repeats: int = 5) -> Peaks:
    if quick:
        n, copy_numel = 256, 1 << 20
    elif device.type == "cuda":
        n, copy_numel = 8192, 1 << 28  # 2 GiB moved per copy: far beyond L2
    else:
        n, copy_numel = 2048, 1 << 26  # 512 MiB moved per copy: beyond any L3
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    c = torch.empty(n, n, device=device)
    gemm = time_fn(lambda: torch.mm(a, b, out=c), device, repeats, warmup=2, min_repeat_s=0)
    del a, b, c
    src = torch.randn(copy_numel, device=device)
    dst = torch.empty_like(src)
    copy = time_fn(lambda: dst.copy_(src), device, repeats, warmup=2, min_repeat_s=0)
    copy_bytes = 2 * src.numel() * src.element_size()
    del src, dst
    # min: a peak is the best the machine did, not its typical run.
    return Peaks(2 * n**3 / gemm.min_s, copy_bytes / copy.min_s, n, copy_bytes)


class OtherLoad:
    """How much of the machine's CPU time other processes took while a
    benchmark ran (from /proc/stat, less this process's own time).

    Threads of one op wait for each other at its end, so on a small machine a
    neighbour busy on one core stretches a two-thread op by whole scheduler
    time slices: CPU timings taken under load mean little, and this says so.
    """

    def __init__(self):
        self._start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # less idle, iowait
        own = os.times()
        return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system, time.monotonic()

    def fraction(self) -> float | None:
        """Share of all CPUs' time used by other processes since construction."""
        end = self._sample()
        if self._start is None or end is None:
            return None
        busy = end[0] - self._start[0]
        own = end[1] - self._start[1]
        wall = end[2] - self._start[2]
        cpus = os.cpu_count() or 1
        return max(0.0, busy - own) / max(wall * cpus, 1e-9)


def matmul_precision_note(device: torch.device) -> str:
    if device.type != "cuda":
        return "fp32"
    return "fp32, TF32 " + ("on" if torch.backends.cuda.matmul.allow_tf32 else "off")


def environment(device: torch.device) -> dict:
    """The facts a result is meaningless without."""
    import localgrad

    return {
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "num_threads": torch.get_num_threads(),
        "matmul_precision": matmul_precision_note(device),
        "localgrad_build": localgrad.build_info(),
        "python": platform.python_version(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", *sys.argv]),
    }


def relu_mlp(widths: Sequence[int]) -> torch.nn.Sequential:
    """Linear layers of the given widths with ReLU between them (none after the last)."""
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def parse_ints(text: str) -> list[int]:
    """A comma-separated command-line list: "128,1024" -> [128, 1024]."""
    return [int(t) for t in text.split(",") if t.strip()]


def parse_nets(text: str) -> list[list[int]]:
    """Networks as widths joined by '-', comma-separated: "4-3-2,5-2" -> [[4, 3, 2], [5, 2]]."""
    return [[int(n) for n in net.split("-")] for net in text.split(",") if net.strip()]


def print_environment(env: dict, device: torch.device, extra: str = "") -> None:
    """The device and build lines every benchmark starts with."""
    print(f"device: {env['device_name']} ({device}), torch {env['torch']} (CUDA {env['torch_cuda']}), "
          f"{env['num_threads']} threads, {env['matmul_precision']}")
    b = env["localgrad_build"]
    print(f"localgrad: extension {b['extension']}, CPU kernels {b['cpu_kernels']}, "
          f"CUDA kernels {b['cuda_kernels']}, OpenMP {b['openmp']}{extra}")


def print_peaks(peaks: Peaks) -> None:
    print(f"peaks measured now: {peaks.flops / 1e9:.4g} GFLOP/s (fp32 mm {peaks.gemm_n}^3), "
          f"{peaks.bandwidth / 1e9:.4g} GB/s (copy, {peaks.copy_bytes / 2**20:.0f} MiB read+written)")


def report_peaks(device: torch.device, quick: bool = False) -> Peaks:
    """measure_peaks, printed: the line every benchmark with floors opens with."""
    peaks = measure_peaks(device, quick=quick)
    print_peaks(peaks)
    return peaks


def print_other_load(other: float | None) -> None:
    """The closing line of a run measured with OtherLoad, naming the CPU count
    so that "25%" reads as one busy core of four."""
    if other is not None:
        print(f"\nother processes used {100 * other:.0f}% of the {os.cpu_count()} CPUs during this run"
              + (": CPU timings taken under load are unreliable" if other > 0.05 else ""))


def finish(args: argparse.Namespace, load: OtherLoad, record: dict) -> float | None:
    """The end of a run: the other processes' share of the CPUs printed and,
    with --json, `record` written with it. Returns that share."""
    other = load.fraction()
    print_other_load(other)
    if args.json:
        write_json(args.json, {**record, "other_load": other})
    return other


def args_record(args: argparse.Namespace) -> dict:
    """The options a result was measured with, for its JSON record; the output
    path says nothing about the measurement."""
    return {k: v for k, v in vars(args).items() if k != "json"}


def write_json(path: str, payload: dict) -> None:
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, default=str)
        f.write("\n")


def fmt_time(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def fmt_num(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}g}"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned names and notes, right-aligned numbers; a last column with
    nothing in it (a "note" no row needed) is left out."""
    if rows and all(not str(r[-1]) for r in rows):
        headers, rows = headers[:-1], [r[:-1] for r in rows]
    left = {0} | {i for i, h in enumerate(headers) if h == "note"}
    widths = [max([len(str(h))] + [len(str(r[i])) for r in rows]) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(
            str(c).ljust(w) if i in left else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    print(f"\n{title}")
    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
