"""The per-test time budget. With LOCALGRAD_TEST_BUDGET_S set (CI sets 60),
a test outside the `slow` set whose setup, call and teardown together took
longer fails the session, named in the summary: a test suite that is fast
only on average lets one test eat the CI's budget unnoticed. Loaded by
tests/conftest.py; works under pytest-xdist (the controller sees every
worker's reports)."""

from __future__ import annotations

import os

import pytest

BUDGET_ENV = "LOCALGRAD_TEST_BUDGET_S"
EXEMPT_MARKER = "slow"

_spent: dict[str, float] = {}
_exempt: set[str] = set()
_over: list[tuple[str, float]] = []


def budget_s() -> float | None:
    text = os.environ.get(BUDGET_ENV, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise pytest.UsageError(f"{BUDGET_ENV} must be a number of seconds, got {text!r}") from None
    if not value > 0:
        raise pytest.UsageError(f"{BUDGET_ENV} must be positive, got {text!r}")
    return value


def pytest_runtest_logreport(report):
    _spent[report.nodeid] = _spent.get(report.nodeid, 0.0) + report.duration
    if EXEMPT_MARKER in report.keywords:
        _exempt.add(report.nodeid)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    limit = budget_s()
    if limit is None or hasattr(session.config, "workerinput"):  # an xdist worker: the controller judges
        return
    _over[:] = sorted(((n, s) for n, s in _spent.items() if s > limit and n not in _exempt), key=lambda x: -x[1])
    if _over and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    limit = budget_s()
    if limit is None or not _over:
        return
    terminalreporter.section(f"over the {limit:g} s per-test budget ({BUDGET_ENV})", red=True)
    for nodeid, seconds in _over:
        terminalreporter.line(f"{seconds:7.1f} s  {nodeid}  (mark it slow or make it faster)")
