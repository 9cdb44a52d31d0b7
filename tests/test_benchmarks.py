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
            "online", "pepita", "predictive_coding", "rules", "target_prop", "compare"]

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


def compare_rules_module():
    from localgrad.bench import _load, families

    return _load(families()["compare"])


def test_compare_summary_pairs_seeds_for_the_gap_and_keeps_refusals():
    summarize = compare_rules_module().summarize

    def row(rule, seed, acc, curve):
        return {"rule": rule, "model": "mlp", "seed": seed, "test_accuracy": acc, "epochs": 1, "optimizer": "Adam",
                "net": "", "seconds_per_epoch": 2.0 + seed, "peak_memory_mb": 100.0 + seed,
                "seconds_to_80": next((t for t, a in curve if a >= 0.80), None),
                "seconds_to_85": next((t for t, a in curve if a >= 0.85), None)}

    rows = [row("backprop", 0, 0.88, [(1, 0.81), (2, 0.86)]), row("backprop", 1, 0.90, [(1, 0.83), (3, 0.87)]),
            row("dfa", 1, 0.86, [(2, 0.80), (4, 0.84)]), row("dfa", 0, 0.87, [(5, 0.82), (6, 0.85)]),
            row("fa", 0, 0.85, [(3, 0.80)]),
            {"rule": "gait", "model": "cnn", "seed": 0, "refused": "gait takes Linear layers only"}]
    by_rule = {(s["model"], s["rule"]): s for s in summarize(rows)}
    dfa = by_rule[("mlp", "dfa")]
    assert dfa["seeds"] == [0, 1]
    assert abs(dfa["accuracy_mean"] - 0.865) < 1e-12 and abs(dfa["accuracy_std"] - 0.01 / 2 ** 0.5) < 1e-12
    # Seed-paired gaps: 0.87 - 0.88 and 0.86 - 0.90, not the difference of the means' spreads.
    assert abs(dfa["gap_to_backprop_mean"] - (-0.025)) < 1e-12
    assert abs(dfa["gap_to_backprop_std"] - 0.03 / 2 ** 0.5) < 1e-12
    assert dfa["seconds_to_80"] == 3.5 and dfa["seconds_to_80_reached"] == "2/2"
    assert dfa["seconds_to_85"] is None and dfa["seconds_to_85_reached"] == "1/2"  # one seed never got there
    assert dfa["peak_memory_mb"] == 101.0 and dfa["seconds_per_epoch"] == 2.5
    assert by_rule[("mlp", "backprop")]["gap_to_backprop_mean"] == 0.0
    assert by_rule[("cnn", "gait")]["not_run"] == "gait takes Linear layers only"
    assert "accuracy_mean" not in by_rule[("cnn", "gait")]
    assert list(by_rule) == [("mlp", "backprop"), ("mlp", "fa"), ("mlp", "dfa"), ("cnn", "gait")]  # registry order
    fa = by_rule[("mlp", "fa")]  # one seed: its spread is unknown, not zero
    assert fa["accuracy_std"] is None and fa["gap_to_backprop_std"] is None
    assert abs(fa["gap_to_backprop_mean"] - (0.85 - 0.88)) < 1e-12


@pytest.mark.skipif(not os.path.isfile("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")
                    and not os.environ.get("LOCALGRAD_DATA"), reason="Fashion-MNIST is not installed")
def test_cli_runs_the_rule_comparison_quick(tmp_path):
    path = tmp_path / "compare.json"
    done = subprocess.run(
        [sys.executable, "-m", "localgrad", "bench", "compare", "--quick", "--device", "cpu", "--json", str(path),
         "--rules", "backprop,gait", "--models", "mlp,cnn", "--threads", "1", "--plot", str(tmp_path / "compare.png")],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"localgrad bench compare failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    record = json.loads(path.read_text())
    assert record["benchmark"] == "compare" and record["n_train"] == 2000 and record["n_test"] == 1000
    assert record["budgets"]["gait"]["epochs"] == 1 and len(record["rows"]) == 4
    summary = {(s["model"], s["rule"]): s for s in record["summary"]}
    assert "Linear layers only" in summary[("cnn", "gait")]["not_run"]
    for key in [("mlp", "backprop"), ("mlp", "gait"), ("cnn", "backprop")]:
        s = summary[key]
        assert 0.1 < s["accuracy_mean"] <= 1.0 and s["seconds_per_epoch"] > 0 and s["peak_memory_mb"] > 0, s
        assert s["gap_to_backprop_mean"] == s["accuracy_mean"] - summary[(key[0], "backprop")]["accuracy_mean"]
    curve = next(r for r in record["rows"] if r["rule"] == "backprop" and r["model"] == "mlp")["curve"]
    assert [c["epoch"] for c in curve] == [0.256, 0.512, 0.768, 1.0]  # 32 batches of 64 (the last 16), every 8th
    assert [c["n_test"] for c in curve] == [1000] * 4 and curve[-1]["accuracy"] == summary[("mlp", "backprop")][
        "accuracy_mean"]
    assert (tmp_path / "compare.png").stat().st_size > 0
