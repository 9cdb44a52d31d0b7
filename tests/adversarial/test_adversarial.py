"""The adversarial suite (issue 15): every op at both levels and the
high-level API, under bad input. One subprocess per batch (an op at one
level), so a crash is reported as the case that caused it and the rest of
the batch still runs; counts by outcome are printed at the end
(`pytest -s tests/adversarial` shows them; they are also in the failure
message)."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

import localgrad

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "runner.py")
TIMEOUT_S = 300

pytestmark = pytest.mark.skipif(not localgrad.has_extension(), reason="compiled extension not built")


def _batch_names() -> list[str]:
    sys.path.insert(0, HERE)
    from cases import batches

    return list(batches())


def run_batch(batch: str) -> list[dict]:
    """All cases of a batch; a case that kills its process is a failure
    ("crash") and the batch resumes after it."""
    results, first = [], 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    while True:
        proc = subprocess.run([sys.executable, RUNNER, batch, str(first)], capture_output=True, text=True,
                              timeout=TIMEOUT_S, env=env)  # fmt: skip
        running, done = None, False
        for line in proc.stdout.splitlines():
            if line.startswith("START "):
                running = line[6:]
            elif line == "DONE":
                done = True
            elif line.startswith("{"):
                results.append(json.loads(line))
                running = None
        if done:
            return results
        if running is None:  # died before its first case
            results.append({"id": f"{batch}/<start>", "outcome": "failure",
                            "detail": f"exit {proc.returncode}: {proc.stderr[-500:]}"})  # fmt: skip
            return results
        results.append({"id": running, "outcome": "failure",
                        "detail": f"crash (exit {proc.returncode}): {proc.stderr[-300:]}"})  # fmt: skip
        first = len(results)


def test_adversarial_suite():
    names = _batch_names()
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        per_batch = dict(zip(names, pool.map(run_batch, names)))
    results = [r for batch in per_batch.values() for r in batch]
    counts = collections.Counter(r["outcome"] for r in results)
    summary = (
        f"adversarial suite: {len(results)} cases, {counts['error']} errors as expected, "
        f"{counts['match']} matched the reference, {counts['known']} known deviations (cases.KNOWN), "
        f"{counts['failure']} failures"
    )
    print("\n" + summary)
    for name, batch in per_batch.items():
        c = collections.Counter(r["outcome"] for r in batch)
        print(f"  {name:28s} {len(batch):4d} cases: {c['error']:4d} error {c['match']:4d} match {c['failure']:3d} failure {c['known']:2d} known")
    failures = [f"{r['id']}: {r['detail']}" for r in results if r["outcome"] == "failure"]
    assert not failures, summary + "\n" + "\n".join(failures)
