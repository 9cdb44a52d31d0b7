"""tests/duration_budget.py fails a session where a test outside the slow
set overran LOCALGRAD_TEST_BUDGET_S, and only then: an inner pytest run on a
tiny suite with a 0.3 s budget."""

import os
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))

SUITE = """
import time
import pytest

def test_quick():
    pass

def test_overruns():
    time.sleep(SLEEP)

@pytest.mark.slow
def test_overruns_but_is_slow():
    time.sleep(SLEEP)
"""


def run_inner(tmp_path, budget, sleep):
    (tmp_path / "conftest.py").write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {HERE!r})
        import duration_budget

        def pytest_configure(config):
            config.addinivalue_line("markers", "slow: exempt from the budget")
            config.pluginmanager.register(duration_budget, "localgrad-duration-budget")
    """))
    (tmp_path / "test_inner.py").write_text(SUITE.replace("SLEEP", repr(sleep)))
    env = {k: v for k, v in os.environ.items() if k != "LOCALGRAD_TEST_BUDGET_S"}
    if budget is not None:
        env["LOCALGRAD_TEST_BUDGET_S"] = budget
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                           str(tmp_path)], capture_output=True, text=True, env=env, cwd=tmp_path)  # fmt: skip


def test_an_overrun_fails_the_session_and_is_named(tmp_path):
    r = run_inner(tmp_path, "0.3", 0.6)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "3 passed" in r.stdout, r.stdout
    assert "test_inner.py::test_overruns " in r.stdout, r.stdout
    assert "test_overruns_but_is_slow" not in r.stdout.split("per-test budget")[1], r.stdout


def test_within_budget_or_unset_passes(tmp_path):
    within = run_inner(tmp_path, "5", 0.05)
    assert within.returncode == 0, within.stdout + within.stderr
    unset = run_inner(tmp_path, None, 0.6)
    assert unset.returncode == 0, unset.stdout + unset.stderr


def test_a_budget_that_is_not_a_number_is_refused(tmp_path):
    r = run_inner(tmp_path, "sixty", 0.0)
    assert r.returncode == 4, r.stdout + r.stderr  # a usage error
    assert "LOCALGRAD_TEST_BUDGET_S must be a number" in r.stdout + r.stderr
