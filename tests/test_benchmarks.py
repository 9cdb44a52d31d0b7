"""The benchmark scripts still run: each one's --quick smoke run, end to end,
writing its JSON record, and `localgrad bench` runs them from the command
line. Nothing here looks at a time (benchmarks are scripts, never timed
tests)."""

import json
import os
import subprocess
import sys

import pytest
from testing import CUDA

import localgrad
from localgrad.bench import benchmarks_dir

# The installed scripts (localgrad.benchmarks in a wheel; benchmarks/ in a
# checkout), so that the tests also run against an installed wheel.
BENCHMARKS = str(benchmarks_dir())
FAMILIES = ["dfa", "eprop_lif", "eqprop", "fa_family", "forward_forward", "forward_gradient", "hebbian", "meta",
            "online", "pepita", "predictive_coding", "rules", "target_prop"]

pytestmark = pytest.mark.skipif(not localgrad.has_extension(), reason="the compiled extension is not built")


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("script", ["bench_dfa.py", "bench_fa_family.py", "bench_eqprop.py", "bench_eprop_lif.py",
                                    "bench_hebbian.py", "bench_predictive_coding.py", "bench_meta.py",
                                    "bench_target_prop.py", "bench_forward_forward.py", "bench_forward_gradient.py",
                                    "bench_pepita.py"])
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


@pytest.mark.parametrize("device", ["cpu", CUDA])
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
    assert {r["rule"] for r in rows} == {"rtrl", "snap1", "rflo/eprop", "uoro", "kfrtrl", "kfrtrl2", "bptt"}
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


def test_cli_lists_every_family():
    done = subprocess.run([sys.executable, "-m", "localgrad", "bench", "--list"], capture_output=True, text=True,
                          timeout=60, check=True)
    listed = [line.split()[0] for line in done.stdout.splitlines() if line.startswith("  ") and line.split()
              and not line.startswith("   ")]
    assert listed == FAMILIES, done.stdout
    assert "DFA benchmark" in done.stdout


def test_cli_runs_one_family_quick(tmp_path):
    path = tmp_path / "dfa.json"
    done = subprocess.run(
        [sys.executable, "-m", "localgrad", "bench", "dfa", "--quick", "--device", "cpu", "--json", str(path),
         "--batches", "8"],  # an argument bench does not know goes to the script
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"localgrad bench dfa failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "vs backprop" in done.stdout  # the ratio table
    record = json.loads(path.read_text())
    assert record["benchmark"] == "dfa" and record["rows"]
    assert record["args"]["batches"] == [8]


def test_cli_rejects_an_unknown_family():
    done = subprocess.run([sys.executable, "-m", "localgrad", "bench", "nope"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert "choose from dfa" in done.stderr


def test_rules_benchmark_times_every_registered_rule(tmp_path):
    """bench_rules.py iterates over the registry: a row per rule, each with a
    time against its kind's exact-gradient baseline or the model's refusal."""
    import localgrad
    from learner_models import REFUSE_MLP

    path = tmp_path / "rules.json"
    done = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "bench_rules.py"), "--quick", "--device", "cpu", "--json", str(path)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, f"bench_rules.py --quick failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    rows = {r["rule"]: r for r in json.loads(path.read_text())["rows"]}
    assert list(rows) == localgrad.rules()
    refused = {name for name, r in rows.items() if r["timing"] is None}
    assert refused == set(REFUSE_MLP), {name: rows[name]["refused"] for name in refused}
    for name, r in rows.items():
        if name not in refused:
            assert localgrad.rule_info(r["baseline"]).baseline and r["vs_baseline"] > 0, r
