"""`localgrad bench`: the benchmark scripts (benchmarks/bench_<family>.py) run
from the command line, one family or all of them.

The scripts stay scripts (`python benchmarks/bench_dfa.py` works as before);
this module finds them and calls each one's `main(argv)` in this process. In a
checkout they are the files in benchmarks/; a wheel ships the same folder as
the package `localgrad.benchmarks` (setup.py maps it), so an installed
`localgrad bench` runs the scripts of the version it came with.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import json
import os
import sys
import tempfile
import textwrap
from pathlib import Path


def benchmarks_dir() -> Path:
    """The folder of the benchmark scripts: the installed localgrad.benchmarks,
    or benchmarks/ next to a checkout's localgrad/ that is on sys.path without
    an install."""
    spec = importlib.util.find_spec("localgrad.benchmarks")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    checkout = Path(__file__).resolve().parent.parent / "benchmarks"
    if (checkout / "_timing.py").is_file():
        return checkout
    raise FileNotFoundError(
        "localgrad bench: the benchmark scripts are not installed (no localgrad.benchmarks and no "
        "benchmarks/ next to the package); reinstall localgrad"
    )


# Benchmarks that are not one family's kernels: run by name, left out of
# `localgrad bench all` (the rule comparison trains every rule on full
# Fashion-MNIST, hours at full size).
STANDALONE = {"compare": "compare_rules.py"}


def families(standalone: bool = True) -> dict[str, Path]:
    """Benchmark name -> script: bench_dfa.py is "dfa"; with standalone, the
    STANDALONE scripts too."""
    folder = benchmarks_dir()
    found = {p.stem[len("bench_"):]: p for p in sorted(folder.glob("bench_*.py"))}
    if standalone:
        found.update({name: folder / script for name, script in STANDALONE.items() if (folder / script).is_file()})
    return found


def describe(script: Path) -> str:
    """The first paragraph of a script's docstring, on one line, read without
    running the script."""
    doc = ast.get_docstring(ast.parse(script.read_text())) or ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def resolve_device(name: str) -> str:
    """auto: the GPU only when localgrad has its CUDA kernels (else the
    benchmark would time the references), like `localgrad demo`."""
    if name != "auto":
        return name
    import torch

    import localgrad

    return "cuda" if torch.cuda.is_available() and localgrad.has_cuda_kernels() else "cpu"


class _LinesAroundBar(io.TextIOBase):
    """stdout for a script while the progress bar runs: whole lines go out
    through tqdm.write, which clears the bar and redraws it below them."""

    def __init__(self, out, bar):
        self._out, self._bar, self._pending = out, bar, ""

    def write(self, text):
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._bar.write(line, file=self._out)
        return len(text)

    def flush(self):
        if self._pending:
            self._bar.write(self._pending, file=self._out)
            self._pending = ""
        self._out.flush()


def _load(script: Path):
    folder = str(script.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # the scripts' helpers: `import _timing`
    spec = importlib.util.spec_from_file_location(f"_localgrad_bench_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_family(name: str, argv: list[str], progress: bool = True, desc: str | None = None) -> int:
    """Runs one family's script with `argv`, a progress bar on stderr counting
    its timed measurements (on a terminal, unless progress is False)."""
    from tqdm import tqdm

    known = families()
    if name not in known:
        raise SystemExit(f"localgrad bench: no benchmark {name!r}; choose from {', '.join(known)} or all")
    module = _load(known[name])
    import _timing  # the scripts' shared module, from the same folder

    bar = tqdm(desc=desc or f"bench {name}", unit=" timings", file=sys.stderr, disable=None if progress else True,
               leave=False, dynamic_ncols=True)
    _timing.progress_hook = bar.update
    redirect = contextlib.nullcontext() if bar.disable else contextlib.redirect_stdout(_LinesAroundBar(sys.stdout, bar))
    try:
        with redirect:
            return int(module.main(argv) or 0)
    finally:
        _timing.progress_hook = None
        bar.close()


def run(name: str, device: str = "auto", json_path: str | None = None, quick: bool = False,
        progress: bool = True, extra: list[str] | None = None) -> int:
    """`localgrad bench NAME`: one family, or "all" of them in turn (extra
    arguments go to a single family's script only). With json_path, one family
    writes its own record there; all of them write {"benchmarks": {family:
    record}}."""
    extra = [a for a in (extra or []) if a != "--"]
    common = ["--device", resolve_device(device)] + (["--quick"] if quick else [])
    if name != "all":
        return run_family(name, common + (["--json", json_path] if json_path else []) + extra, progress)
    if extra:
        raise SystemExit(f"localgrad bench all: arguments for one script ({' '.join(extra)}) need a family name")
    names = list(families(standalone=False))
    records, failed = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for i, family in enumerate(names, 1):
            print(f"\n==== localgrad bench {family} ({i}/{len(names)}) ====", flush=True)
            out = os.path.join(tmp, f"{family}.json")
            try:
                rc = run_family(family, common + ["--json", out], progress, desc=f"bench {family} [{i}/{len(names)}]")
            except Exception as exc:  # one broken family must not hide the others' results
                print(f"localgrad bench {family}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                rc = 1
            if rc:
                failed.append(family)
            elif os.path.exists(out):
                with open(out) as f:
                    records[family] = json.load(f)
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"benchmarks": records, "failed": failed}, f, indent=2, default=str)
            f.write("\n")
        print(f"\nwrote {json_path}")
    if failed:
        print(f"localgrad bench: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def print_list() -> None:
    scripts = families()
    width = max(len(n) for n in scripts)
    print(f"benchmarks in {benchmarks_dir()}:")
    for name, script in scripts.items():
        lines = textwrap.wrap(describe(script), 96 - width, break_on_hyphens=False) or [""]
        print(f"  {name.ljust(width)}  {lines[0]}")
        for line in lines[1:]:
            print(f"  {' ' * width}  {line}")
    print("run one with `localgrad bench NAME [--quick] [--device cpu|cuda] [--json FILE]`, or `localgrad bench all`")
