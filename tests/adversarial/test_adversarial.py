"""The adversarial suite (issue 15): every op of the op table (op_specs.py)
at both levels and the high-level API, under bad input, one pytest item per
case (`-k 'dfa_project/ops/error:transposed'` runs one).

The cases of a batch (an op at one level) run together in one subprocess
the first time one of them is needed, limited to the cases this session
selected; a crash is reported as the case that caused it and the rest of the
batch still runs. Each batch is one xdist group: run with `-n 2 --dist
loadgroup` so that no batch runs twice."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile

import pytest

import localgrad

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "runner.py")
TIMEOUT_S = 300

if HERE not in sys.path:
    sys.path.insert(0, HERE)

from pending import PENDING  # noqa: E402


def _item_id(case_id: str) -> str:
    """The case id with what pytest's -k cannot spell (=, quotes, spaces) as _."""
    return re.sub(r"[^\w:+\-.\[\]/]", "_", case_id)


def _all_cases() -> list[tuple[str, str]]:
    if not localgrad.has_extension():
        return []
    from cases import batches

    return [(batch, case.id) for batch, cases in batches().items() for case in cases]


CASES = _all_cases()
_ITEM_IDS = [_item_id(cid) for _, cid in CASES]
assert len(set(_ITEM_IDS)) == len(_ITEM_IDS), "two adversarial cases share an item id"


def run_batch(batch: str, ids: list[str]) -> dict[str, dict]:
    """The given cases of a batch, by id; a case that kills its process is a
    failure ("crash") and the batch resumes after it."""
    results: dict[str, dict] = {}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    remaining = list(ids)
    while remaining:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(remaining, f)
        try:
            proc = subprocess.run([sys.executable, RUNNER, batch, f.name], capture_output=True, text=True,
                                  timeout=TIMEOUT_S, env=env)  # fmt: skip
        finally:
            os.unlink(f.name)
        running, done = None, False
        for line in proc.stdout.splitlines():
            if line.startswith("START "):
                running = line[6:]
            elif line == "DONE":
                done = True
            elif line.startswith("{"):
                r = json.loads(line)
                results[r["id"]] = r
                running = None
        if done:
            break
        if running is None:  # died before its first case
            for cid in remaining:
                results.setdefault(cid, {"id": cid, "outcome": "failure",
                                         "detail": f"batch died at start, exit {proc.returncode}: {proc.stderr[-500:]}"})
            break
        results[running] = {"id": running, "outcome": "failure",
                            "detail": f"crash (exit {proc.returncode}): {proc.stderr[-300:]}"}  # fmt: skip
        remaining = [cid for cid in remaining if cid not in results]
    return results


@pytest.fixture(scope="session")
def adversarial_outcome(request):
    cache: dict[str, dict] = {}

    def outcome(batch: str, case_id: str) -> dict:
        if case_id not in cache:
            selected = [cid for b, cid in (_case_of(item) for item in request.session.items) if b == batch]
            wanted = [cid for cid in selected if cid not in cache] or [case_id]
            if case_id not in wanted:
                wanted.append(case_id)
            cache.update(run_batch(batch, wanted))
        return cache.get(case_id, {"outcome": "failure", "detail": "the runner never reported this case"})

    return outcome


def _case_of(item) -> tuple[str | None, str | None]:
    callspec = getattr(item, "callspec", None)
    if callspec is None or getattr(item, "originalname", None) != "test_case" or item.fspath != __file__:
        return None, None
    return callspec.params["case"]


def _params():
    for (batch, cid), item_id in zip(CASES, _ITEM_IDS):
        marks = [pytest.mark.xdist_group(batch)]
        if cid in PENDING:
            marks.append(pytest.mark.xfail(reason=PENDING[cid], strict=True))
        yield pytest.param((batch, cid), id=item_id, marks=marks)


@pytest.mark.skipif(not localgrad.has_extension(), reason="compiled extension not built")
@pytest.mark.parametrize("case", list(_params()))
def test_case(case, adversarial_outcome):
    batch, cid = case
    r = adversarial_outcome(batch, cid)
    assert r["outcome"] in ("error", "match", "known"), f"{cid}: {r['detail']}"


def test_pending_cases_exist():
    """A pending entry that names no case is a typo that hides nothing."""
    if not localgrad.has_extension():
        pytest.skip("compiled extension not built")
    ids = {cid for _, cid in CASES}
    assert not set(PENDING) - ids, sorted(set(PENDING) - ids)
