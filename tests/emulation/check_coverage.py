"""Checks that the emulated tests reached every launch site of every CUDA
kernel file, and every instantiation of each kernel there.

    LOCALGRAD_EMULATION_COVERAGE=counts.json pytest -m emulated [-n 2]
    python tests/emulation/check_coverage.py counts.json

Launch sites are the LOCALGRAD_LAUNCH lines of csrc/cuda/*.cu; the counts come
from the emulator (localgrad._C_emulated.launch_counts()), which records each
launch by file:line and by the kernel function launched.
"""

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Instantiations each site can launch: dtypes x template modes.
EXPECTED = {
    "project_kernel<scalar_t>": 4,  # f64, f32, f16, bf16
    "kernel": None,  # eprop_lif (12) and eqprop persistent (48): by file below
    "relax_step_kernel<T, kSigma, kNudge>": 2 * 3 * 4,  # dtype x sigma x nudge
    "finish_step_kernel<double>": 1,
    "finish_step_kernel<float>": 1,
    "chunk_kernel<scalar_t>": 2,
    "finish_step_kernel<scalar_t>": 2,
    "step_kernel<scalar_t>": 2,
    "norms_kernel<scalar_t>": 2,
    "update_kernel<scalar_t>": 2,
    "fill_kernel<scalar_t, true>": 4,
    "fill_kernel<scalar_t, false>": 4,
}
# One instantiation per site: hebbian and predictive_coding launch each
# dtype from its own line.
for _name in ("power_kernel", "activate_kernel", "combine_kernel", "errors_kernel", "states_kernel"):
    for _t in ("double", "float"):
        EXPECTED[f"{_name}<{_t}>"] = 1
for _out in ("double, double", "float, __half", "float, __nv_bfloat16", "float, float"):
    EXPECTED[f"finalize_kernel<{_out}>"] = 1
# Plastic layers (meta_kernel.cu): dtype x activation for the row kernels.
EXPECTED.update({"plastic_forward_kernel<T, kAct>": 4, "plastic_rows_kernel<T, kAct>": 4,
                 "plastic_inputs_kernel<T>": 2, "plastic_weights_kernel<T>": 2})
# target propagation: each kernel's dtypes launch from their own lines.
for _name in ("noisy_kernel", "gate_kernel", "reduce_kernel"):
    for _t in ("double", "float"):
        EXPECTED[f"{_name}<{_t}>"] = 1
# Forward-Forward: each kernel's dtypes launch from their own lines.
for _name in ("normalize_kernel", "layer_kernel"):
    for _t in ("double", "float"):
        EXPECTED[f"{_name}<{_t}>"] = 1
BY_FILE = {"eprop_lif_kernel.cu": 2 * 2 * 3, "eqprop_kernel.cu": 2 * 3 * 4 * 2}
# KF-RTRL (kfrtrl_kernel.cu): rank 1 (norms, update) and rank >= 2 (terms), f32 and f64.
EXPECTED.update({"kf_norms_kernel<scalar_t>": 2, "kf_update_kernel<scalar_t>": 2, "kf_terms_kernel<scalar_t>": 2})


def launch_sites():
    sites = []
    for path in sorted((ROOT / "csrc" / "cuda").glob("*.cu")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bLOCALGRAD_LAUNCH\(", line):
                sites.append(f"csrc/cuda/{path.name}:{number}")
    return sites


def main(path):
    # One file, or one per pytest-xdist worker (path.gw0, path.gw1, ...).
    files = [Path(path)] if Path(path).exists() else []
    files += sorted(Path(path).parent.glob(Path(path).name + ".gw*"))
    if not files:
        print(f"no launch counts at {path}")
        return 1
    counts = [c for f in files for c in json.loads(f.read_text())]
    by_site = {}
    for c in counts:
        by_site.setdefault(c["site"], []).append(c)
    missing, partial = [], []
    for site in launch_sites():
        seen = by_site.get(site, [])
        launches = sum(c["launches"] for c in seen)
        inst = len({k for c in seen for k in c["kernels"]})  # distinct kernels over all files
        name = seen[0]["kernel"] if seen else "?"
        want = EXPECTED.get(name)
        if want is None:
            want = BY_FILE.get(site.split("/")[-1].split(":")[0])
        print(f"{site:40s} {name:40s} launches {launches:7d}  instantiations {inst}/{want}")
        if launches == 0:
            missing.append(site)
        elif want is not None and inst < want:
            partial.append(site)
    if missing or partial:
        print(f"not reached: {missing}; not every instantiation reached: {partial}")
        return 1
    print(f"all {len(launch_sites())} launch sites reached, every instantiation")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
