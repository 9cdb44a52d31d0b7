"""The measured tables of the docs, rendered from the JSON the benchmarks wrote.

A page asks for a table with a marker line, `<!-- table: NAME -->`; the mkdocs
hook (`docs/hooks.py`) replaces it by `render(NAME)` at build time, so no
figure in the docs is typed by hand. Each table names its JSON file(s) in
`benchmarks/results/`, the rows it keeps and the columns it shows; the caption
under it (device, torch, threads, command) is read from the same file.

    python docs/gen_tables.py             # every table, to stdout
    python docs/gen_tables.py online-kfrtrl
    python docs/gen_tables.py --update README.md

README.md is not built by mkdocs, so its tables are written into the file:
between `<!-- table: NAME -->` and `<!-- end table -->`, `--update` puts the
current rendering (tests/test_docs_examples.py fails when it is stale).
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


# ---------------------------------------------------------------- formatting
def _sig(value: float, digits: int = 3) -> str:
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(value)))))
    return f"{value:.{decimals}f}"


def seconds(value) -> str:
    if value is None:
        return "–"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if abs(value) >= scale or unit == "ns":
            return f"{_sig(value / scale)} {unit}"
    raise AssertionError("unreachable")


def times(value) -> str:
    return "–" if value is None else f"{_sig(value)}×"


def number(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return _sig(value)


def mebibytes(value) -> str:
    return "–" if value is None else _sig(value / 2**20, 2)


def kibibytes(value) -> str:
    return "–" if value is None else f"{value / 1024:,.1f}"


def percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def degrees(value) -> str:
    return "–" if value is None else f"{value:.1f}°"


def text(value) -> str:
    return "–" if value is None else str(value).replace("|", "\\|")


# ---------------------------------------------------------------- the specs
def get(path: str) -> Callable[[dict], object]:
    """A column reading `a.b.c` from a row; missing keys read as None."""

    def read(row: dict):
        value = row
        for key in path.split("."):
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value

    return read


@dataclass
class Table:
    sources: tuple[str, ...]
    columns: list[tuple[str, Callable[[dict], object], Callable[[object], str]]]
    where: dict = field(default_factory=dict)
    # Several runs of one benchmark: rows with equal `key` columns are merged
    # by keeping the one with the smallest `best` value (the least-loaded run).
    key: tuple[str, ...] = ()
    best: str | None = None
    # Applied to the kept rows before rendering (values derived across rows).
    prepare: Callable[[list[dict]], list[dict]] | None = None
    note: str = ""
    rows: str = "rows"  # the record's list the table reads (the comparison's per-rule "summary")


def _ratio(numerator: str, denominator: str) -> Callable[[dict], object]:
    def read(row: dict):
        a, b = get(numerator)(row), get(denominator)(row)
        return None if a is None or b in (None, 0) else a / b

    return read


def _backprop_seconds(row: dict) -> float:
    rows = _load(TABLES["curves"].sources[0])["rows"]
    return next(r["seconds_per_epoch"] for r in rows if r["rule"] == "backprop")


def _against_best_backprop(rows: list[dict]) -> list[dict]:
    """Target propagation's three runs: a step against the fastest backprop
    step of all runs, and the floor at the best GEMM rate of all runs (the
    smallest floor any run computed for that row), so that load in one run
    does not make another rule look cheap."""
    backprop = min(r["step_s"] for r in rows if r["rule"] == "backprop")
    return [{**r, "x_backprop": r["step_s"] / backprop, "floor_over_step": r["best_floor_s"] / r["step_s"]}
            for r in rows]


def _mean_std(mean: str, std: str, scale: float = 1.0, signed: bool = False) -> Callable[[dict], object]:
    def read(row: dict):
        m, s = get(mean)(row), get(std)(row)
        if m is None:
            return None
        sign = "+" if signed else ""
        return f"{scale * m:{sign}.2f} ± {scale * s:.2f}" if s is not None else f"{scale * m:{sign}.2f}"

    return read


def _reached(key: str) -> Callable[[dict], object]:
    """Seconds to an accuracy, or how many seeds never reached it."""
    def read(row: dict):
        value, reached = row.get(key), row.get(f"{key}_reached", "")
        if value is None:
            return f"- ({reached} seeds)"
        return f"{value:.1f}" + ("" if reached.split("/")[0] == reached.split("/")[-1] else f" ({reached} seeds)")

    return read


TABLES: dict[str, Table] = {
    "fashion-mlp": Table(
        ("compare-cpu-2026-12-08.json",),
        [("rule", get("rule"), text), ("family", lambda r: r["family"].replace("_", " "), text),
         ("test accuracy % (mean ± std)", _mean_std("accuracy_mean", "accuracy_std", 100), text),
         ("gap to backprop (pt ± std)", _mean_std("gap_to_backprop_mean", "gap_to_backprop_std", 100, True), text),
         ("epochs", get("epochs"), number), ("s / epoch", get("seconds_per_epoch"), number),
         ("s to 80 %", _reached("seconds_to_80"), text), ("s to 85 %", _reached("seconds_to_85"), text)],
        where={"model": "mlp"}, rows="summary",
        note="MLP 784-256-256-10, seeds 0-2, a short budget (3 epochs; 1 for the rules whose steps cost 5-40x "
             "backprop's), on a machine shared with other jobs (load 5-22 on 2 cores): times are inflated and "
             "not comparable between rows"),
    "curves": Table(
        ("curves-cpu-2026-12-08.json",),
        [("rule", get("rule"), text), ("family", lambda r: r["family"].replace("_", " "), text),
         ("test accuracy", get("final_accuracy"), percent), ("s / epoch", get("seconds_per_epoch"), number),
         ("× backprop's time", lambda r: r["seconds_per_epoch"] / _backprop_seconds(r), times),
         ("mean angle to backprop's gradient", get("final_mean_angle"), degrees)],
        note="angle: the mean over the weight matrices after the last epoch, on 256 held-out digits; the machine "
             "was shared with other jobs during the run, so times are only indicative"),
    "dfa-op": Table(
        ("dfa-cpu-2026-11-24.json",),
        [("batch", get("batch"), number), ("variant", get("variant"), text),
         ("median", get("median_s"), seconds), ("× floor", get("x_floor"), times),
         ("GFLOP/s", get("gflops"), number), ("vs fused", get("vs_fused"), times)],
        where={"part": "op"}),
    "dfa-step": Table(
        ("dfa-cpu-2026-11-24.json",),
        [("batch", get("batch"), number), ("variant", get("variant"), text),
         ("median", get("median_s"), seconds), ("× FLOP floor", get("x_flop_floor"), times),
         ("speed vs backprop", get("speedup_vs_backprop"), times)],
        where={"part": "step"}),
    "fa-family-step": Table(
        ("fa_family-cpu-2026-11-24.json",),
        [("model", get("model"), text), ("batch", get("batch"), number), ("rule", get("rule"), text),
         ("implementation", get("implementation"), text), ("median", get("median_s"), seconds),
         ("speed vs backprop", get("speedup_vs_backprop"), times), ("FLOP bound", get("bound"), times)],
        where={"part": "step"}),
    "sign-feedback": Table(
        ("fa_family-cpu-2026-11-24.json",),
        [("layer", get("layer"), text), ("shape", get("shape"), text), ("magnitude", get("magnitude"), text),
         ("variant", get("variant"), text), ("median", get("median_s"), seconds),
         ("GB/s", get("gbps"), number), ("vs fused", get("vs_fused"), times)],
        where={"part": "sign_feedback"}),
    "eqprop-relax": Table(
        ("eqprop-cpu-2026-11-24.json",),
        [("net", get("net"), text), ("batch", get("batch"), number), ("T", get("steps"), number),
         ("variant", get("variant"), text), ("median", get("median_s"), seconds),
         ("× floor", get("x_floor"), times), ("vs fused", get("vs_fused"), times)],
        where={"part": "relax"}),
    "eqprop-convergence": Table(
        ("eqprop-cpu-2026-11-24.json",),
        [("net", get("net"), text), ("batch", get("batch"), number), ("tol", get("tol"), number),
         ("update", get("update"), text), ("mean steps", get("mean_steps"), number),
         ("most steps", get("max_steps_used"), number), ("unconverged rows", get("unconverged_rows"), number)],
        where={"part": "convergence"}),
    "eqprop-step": Table(
        ("eqprop-cpu-2026-11-24.json",),
        [("net", get("net"), text), ("batch", get("batch"), number), ("variant", get("variant"), text),
         ("median", get("median_s"), seconds), ("× backprop's time", get("vs_backprop"), times)],
        where={"part": "step"}),
    "online": Table(
        ("online-cpu-2026-11-24.json",),
        [("rule", get("rule"), text), ("kind", get("kind"), text), ("hidden", get("hidden"), number),
         ("batch", get("batch"), number), ("fused", get("kernel_s"), seconds),
         ("reference", get("reference_s"), seconds),
         ("speed-up", _ratio("reference_s", "kernel_s"), times),
         ("× floor", _ratio("kernel_s", "floor_s"), times),
         ("bytes / sample", get("bytes_per_sample"), number), ("note", get("note"), text)]),
    "online-kfrtrl": Table(
        ("online-cpu-2026-12-02.json",),
        [("rule", get("rule"), text), ("kind", get("kind"), text), ("hidden", get("hidden"), number),
         ("batch", get("batch"), number), ("fused", get("kernel_s"), seconds),
         ("reference", get("reference_s"), seconds),
         ("speed-up", _ratio("reference_s", "kernel_s"), times),
         ("× floor", _ratio("kernel_s", "floor_s"), times),
         ("bytes / sample", get("bytes_per_sample"), number), ("note", get("note"), text)],
        where={"rule": ("kfrtrl", "kfrtrl2", "uoro", "rtrl")}),
    "eprop-lif": Table(
        ("eprop_lif-cpu-2026-11-24.json",),
        [("hidden", get("hidden"), number), ("batch", get("batch"), number),
         ("implementation", get("implementation"), text), ("chunk (20 steps)", get("chunk_s"), seconds),
         ("vs fused", get("chunk_vs_fused"), times), ("× floor", get("x_floor"), times),
         ("KiB / sample", get("bytes_per_sample"), kibibytes)]),
    "hebbian": Table(
        ("hebbian-cpu-2026-12-01.json",),
        [("rule", get("rule"), text), ("batch", get("batch"), number), ("in", get("n_in"), number),
         ("out", get("n_out"), number), ("fused", get("fused.median_s"), seconds),
         ("eager", get("eager.median_s"), seconds), ("reference f64", get("reference_float64.median_s"), seconds),
         ("eager / fused", get("eager_over_fused"), times),
         ("reference / fused", get("reference_over_fused"), times)]),
    "meta-plastic": Table(
        ("meta-cpu-2026-12-07.json",),
        [("N", get("n"), number), ("T", get("steps"), number),
         ("fused", get("fused.time.median_s"), seconds),
         ("fused, recompute", lambda r: get("fused, recomputed.time.median_s")(r)
          or get("fused, recomputed.skipped")(r), lambda v: v if isinstance(v, str) else seconds(v)),
         ("eager autograd", lambda r: get("eager.time.median_s")(r) or get("eager.skipped")(r),
          lambda v: v if isinstance(v, str) else seconds(v)),
         ("eager / fused", get("eager_over_fused"), times),
         ("held MiB: fused", get("fused.held_bytes"), mebibytes),
         ("recompute", get("fused, recomputed.held_bytes"), mebibytes),
         ("eager", get("eager.held_bytes"), mebibytes)]),
    "target-prop": Table(
        ("target_prop-cpu-2026-12-02.json", "target_prop-cpu-2026-12-02-run2.json",
         "target_prop-cpu-2026-12-02-run3.json"),
        [("rule", get("rule"), text),
         ("schedule (K, S)", lambda r: f"{r['schedule']} (K={r['iterations']}, S={r['samples']})"
          if r["schedule"] != "-" else "-", text),
         ("implementation", get("implementation"), text), ("ms / step", lambda r: r["step_s"] * 1e3, number),
         ("× backprop", get("x_backprop"), times), ("floor / step", get("floor_over_step"), number)],
        key=("rule", "implementation", "schedule", "iterations", "samples"), best="step_s",
        prepare=_against_best_backprop,
        note="each row the best of three runs, against the best backprop step; floor at the best GEMM rate "
             "of the three runs"),
}


# ---------------------------------------------------------------- rendering
def _load(name: str) -> dict:
    path = RESULTS / name
    if not path.is_file():
        raise FileNotFoundError(f"table source {path} does not exist")
    return json.loads(path.read_text())


def _environment(record: dict) -> dict:
    return record.get("environment", record)


def _matches(row: dict, where: dict) -> bool:
    for key, wanted in where.items():
        value = row.get(key)
        if isinstance(wanted, tuple):
            if value not in wanted:
                return False
        elif value != wanted:
            return False
    return True


def rows_of(table: Table) -> list[dict]:
    rows = []
    for source in table.sources:
        rows += [row for row in _load(source)[table.rows] if _matches(row, table.where)]
    if table.key:
        merged: dict[tuple, dict] = {}
        floors: dict[tuple, float] = {}
        for row in rows:
            k = tuple(row.get(c) for c in table.key)
            if k not in merged or row[table.best] < merged[k][table.best]:
                merged[k] = row
            if row.get("floor_s") is not None:
                floors[k] = min(floors.get(k, math.inf), row["floor_s"])
        rows = [{**row, "best_floor_s": floors.get(k)} for k, row in merged.items()]
    return table.prepare(rows) if table.prepare else rows


def caption(table: Table) -> str:
    env = _environment(_load(table.sources[0]))
    threads = env.get("num_threads")
    parts = [f"{env.get('device', '?').upper()} ({env.get('device_name', 'unknown')})",
             f"torch {env.get('torch', '?')}",
             f"{threads} thread{'s' if threads != 1 else ''}" if threads else None,
             f"measured {str(env.get('date_utc', '?'))[:10]}"]
    files = ", ".join(f"`benchmarks/results/{s}`" for s in table.sources)
    command = env.get("command")
    out = f"Generated from {files}: " + ", ".join(p for p in parts if p)
    if table.note:
        out += f"; {table.note}"
    if command:
        out += f". Command: `{command}`"
    return out + "."


def render(name: str) -> str:
    if name not in TABLES:
        raise KeyError(f"no table named {name!r}; known: {', '.join(sorted(TABLES))}")
    table = TABLES[name]
    rows = rows_of(table)
    if not rows:
        raise ValueError(f"table {name!r} selects no row of {table.sources}")
    lines = ["| " + " | ".join(h for h, _, _ in table.columns) + " |",
             "|" + "---|" * len(table.columns)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(read(row)) for _, read, fmt in table.columns) + " |")
    return "\n".join(lines) + "\n\n" + caption(table) + "\n"


BLOCK = re.compile(r"(<!-- table: ([\w.-]+) -->\n)(.*?)(<!-- end table -->)", re.S)


def updated(markdown: str) -> str:
    """`markdown` with every table block re-rendered."""
    return BLOCK.sub(lambda m: f"{m.group(1)}{render(m.group(2))}{m.group(4)}", markdown)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--update"]:
        for path in map(Path, argv[1:]):
            path.write_text(updated(path.read_text(encoding="utf-8")), encoding="utf-8")
        return 0
    for name in argv or sorted(TABLES):
        print(f"## {name}\n\n{render(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
