"""The benchmark scripts still run: each one's --quick smoke run, end to end,
writing its JSON record. Nothing here looks at a time (benchmarks are scripts,
never timed tests)."""

import json
import os
import subprocess
import sys

import pytest
from testing import DEVICES

import localgrad

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")

pytestmark = pytest.mark.skipif(not localgrad.has_extension(), reason="the compiled extension is not built")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("script", ["bench_dfa.py", "bench_fa_family.py", "bench_eqprop.py", "bench_eprop_lif.py",
                                    "bench_predictive_coding.py"])
def test_quick_run_writes_rows(script, device, tmp_path):
    path = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, script), "--quick", "--device", device, "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{script} --quick failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    record = json.loads(path.read_text())
    assert record["rows"], f"{script} wrote no rows"
    # BioTorch is optional (and fails on some rules by itself); every other row must run.
    failed = [
        r for r in record["rows"] if "error" in r and "BioTorch" not in (r.get("variant") or r.get("implementation", ""))
    ]
    assert not failed, f"{script}: rows that failed: {failed}"


@pytest.mark.parametrize("device", DEVICES)
def test_online_quick_run_writes_rows(device, tmp_path):
    path = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "bench_online.py"), "--quick", "--device", device,
         "--json", str(path), "--plot", str(tmp_path / "scaling.png")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"bench_online.py --quick failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    rows = json.loads(path.read_text())["rows"]
    assert {r["rule"] for r in rows} == {"rtrl", "snap1", "rflo/eprop", "uoro", "bptt"}
    assert all(r["kernel_s"] for r in rows)
    replot = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "bench_online.py"), "--from-json", str(path),
         "--plot", str(tmp_path / "again.png")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert replot.returncode == 0, replot.stderr[-3000:]
    assert "rflo/eprop" in replot.stdout
