"""Proof that the emulated tests can fail: known mutations of the CUDA kernels,
each compiled into its own localgrad._C_emulated and run against its
family's emulated tests, which must then fail.

    python tests/emulation/mutants.py            # all mutants, prints the score
    python tests/emulation/mutants.py --list
    python tests/emulation/mutants.py dfa-no-sync-after-load
    python tests/emulation/mutants.py --jobs 1   # one at a time

Needs the plain emulated build in this checkout (`LOCALGRAD_CUDA_EMULATION=only
python setup.py build_ext --inplace`). Nothing of the checkout is written:
each worker gets a scratch copy of csrc/, the localgrad package and tests/;
a mutant recompiles only its kernel file there (a shared header's mutant:
every kernel file that includes it), with the compile command ninja
recorded for the checkout's build, relinks against the checkout's other
objects, and runs the tests in the copy. Kernel files are torch-free, so one
mutant costs seconds of compiling, not a build. Exit status 1 when a mutant
survives, 2 on a broken mutant (its snippet not found, or it does not
compile).
"""

from __future__ import annotations

import argparse
import os
import queue
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Mutant:
    name: str
    file: str  # under csrc/cuda/
    old: str
    new: str
    tests: list[str]  # pytest arguments selecting the family's tests
    why: str


DFA = ["tests/test_dfa_op.py"]
EPROP = ["tests/test_eprop_lif_op.py"]
EQPROP = ["tests/test_eqprop_op.py"]
SIGN = ["tests/test_sign_feedback_op.py"]
HEBBIAN = ["tests/test_hebbian_op.py"]
PC = ["tests/test_predictive_coding_op.py"]
TP = ["tests/test_target_prop_op.py", "-k", "float64 or grid_stride"]


def online(op):
    return ["tests/test_online_ops.py", "-k", op]


MUTANTS = [
    Mutant("dfa-no-sync-after-load", "dfa_kernel.cu",
           "      __syncthreads();\n#pragma unroll\n      for (int k = 0; k < kBK; ++k) {",
           "#pragma unroll\n      for (int k = 0; k < kBK; ++k) {", DFA,
           "drop a __syncthreads: tiles read before every thread has staged its part"),
    Mutant("dfa-skip-tail-slab", "dfa_kernel.cu",
           "for (int64_t k0 = 0; k0 < params.n_out; k0 += kBK) {",
           "for (int64_t k0 = 0; k0 + kBK <= params.n_out; k0 += kBK) {", DFA,
           "skip the tail tile of n_out"),
    Mutant("dfa-drop-layer-offset", "dfa_kernel.cu",
           "feedback[kk * params.feedback_row_stride + layer.col_offset + col]",
           "feedback[kk * params.feedback_row_stride + col]", DFA,
           "wrong index: every layer reads the first layer's feedback columns"),
    Mutant("eprop-no-sync-before-psi", "eprop_lif_kernel.cu",
           "      __syncthreads();  // every synapse has read psi_prev\n", "", EPROP,
           "drop a __syncthreads: psi_prev overwritten while synapses still read it"),
    Mutant("eprop-skip-bias-trace", "eprop_lif_kernel.cu",
           "for (int64_t j = tid; j <= H; j += kThreads) zk[j] = kappa",
           "for (int64_t j = tid; j < H; j += kThreads) zk[j] = kappa", EPROP,
           "<= to <: the readout's bias trace (element H) is never advanced"),
    Mutant("eprop-store-not-add", "eprop_lif_kernel.cu",
           "if (s < H * P) atomicAdd(g + s, grad[r]);",
           "if (s < H * P) g[s] = grad[r];", EPROP,
           "a plain store for the atomic accumulation into grad_w"),
    Mutant("eprop-static-shared-uncounted", "eprop_lif_kernel.cu",
           "if (static_bytes<scalar_t, kAdaptive, kMode>() + bytes > static_cast<size_t>(default_limit)) {",
           "if (bytes > static_cast<size_t>(default_limit)) {", EPROP,
           "issue 22 W1 undone: the opt-in ignores the static has_loss flag"),
    Mutant("eqprop-no-sync-between-phases", "eqprop_kernel.cu",
           "      }\n      __syncthreads();\n      // Phase B:",
           "      }\n      // Phase B:", EQPROP,
           "drop a __syncthreads: phase B reads pre-activations not yet written"),
    Mutant("eqprop-freeze-at-equal", "eqprop_kernel.cu",
           "if (DeltaBits<T>::value(row_delta[r]) < static_cast<T>(p.tol)) frozen[r] = 1;",
           "if (DeltaBits<T>::value(row_delta[r]) <= static_cast<T>(p.tol)) frozen[r] = 1;", EQPROP,
           "< to <=: with tol = 0 a row that stopped moving freezes"),
    Mutant("warp-sum-short-butterfly", "warp.cuh",
           "for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);",
           "for (int o = kWarp / 4; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);", EQPROP,
           "a warp sum (EqProp's layer products) that skips the first shuffle level"),
    Mutant("eqprop-step-freeze-at-equal", "eqprop_kernel.cu",
           "if (row_delta[r] < static_cast<T>(tol)) frozen[r] = 1;",
           "if (row_delta[r] <= static_cast<T>(tol)) frozen[r] = 1;", EQPROP,
           "< to <= in the per-step path's finish kernel"),
    Mutant("rflo-no-sync", "rflo_kernel.cu",
           "  partial[slice][threadIdx.x % kCols] = acc;\n  __syncthreads();\n",
           "  partial[slice][threadIdx.x % kCols] = acc;\n", online("rflo"),
           "drop a __syncthreads: slice 0 sums partials the other warps have not written"),
    Mutant("rflo-skip-last-column", "rflo_kernel.cu",
           "  if (c < cols) {\n    for (int64_t b = slice;",
           "  if (c + 1 < cols) {\n    for (int64_t b = slice;", online("rflo"),
           "skip the tail: the bias column is never traced"),
    Mutant("rtrl-swap-indices", "rtrl_kernel.cu",
           "if (i == k) inner += v.template at<scalar_t>(b, k, c);",
           "if (i == c) inner += v.template at<scalar_t>(b, k, c);", online("rtrl"),
           "swap two indices in the immediate-Jacobian test"),
    Mutant("rtrl-skip-tail", "rtrl_kernel.cu",
           "threadIdx.x; idx < total;\n       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {\n    const int64_t row = idx / width",
           "threadIdx.x; idx + 1 < total;\n       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {\n    const int64_t row = idx / width",
           online("rtrl"), "< to a bound one short: the last element is never written"),
    Mutant("snap-skip-last-neighbour", "snap_kernel.cu",
           "for (int64_t n = q.nbr_ptr[e]; n < q.nbr_ptr[e + 1]; ++n)",
           "for (int64_t n = q.nbr_ptr[e]; n + 1 < q.nbr_ptr[e + 1]; ++n)", online("snap"),
           "skip the last entry of every neighbour list"),
    Mutant("snap-swap-indices", "snap_kernel.cu",
           "alpha * dphi[b * q.hidden + k] * acc;",
           "alpha * dphi[b * q.hidden + i] * acc;", online("snap"),
           "swap two indices: phi' of the row unit instead of the entry's unit"),
    Mutant("tiles-no-sync-in-reduction", "tiles.cuh",
           "      for (int j = 0; j < 4; ++j) sums[j][threadIdx.x] += sums[j][threadIdx.x + half];\n    __syncthreads();\n",
           "      for (int j = 0; j < 4; ++j) sums[j][threadIdx.x] += sums[j][threadIdx.x + half];\n",
           online("uoro"), "drop the __syncthreads of the tree reduction (UORO's and KF-RTRL's norms)"),
    Mutant("tiles-short-reduction", "tiles.cuh",
           "for (int half = kThreads / 2; half > 0; half /= 2) {",
           "for (int half = kThreads / 2; half > 1; half /= 2) {", online("kfrtrl"),
           "> 0 to > 1: the norms' reduction stops one level early"),
    Mutant("eqprop-static-shared-uncounted", "eqprop_kernel.cu",
           "  return static_cast<size_t>(bytes) - attr.sharedSizeBytes;",
           "  return static_cast<size_t>(bytes);", ["tests/test_eqprop_op.py", "-k", "static_shared"],
           "the opt-in limit not reduced by the layout table's static shared memory"),
    Mutant("tiles-first-tile-only", "tiles.cuh",
           "for (int64_t i = 0; i < tiles; ++i)",
           "for (int64_t i = 0; i < 1; ++i)", online("uoro"),
           "every tile forms rho from the first tile's norms, not the sample's"),
    Mutant("tiles-short-slice", "tiles.cuh",
           "const int64_t per = (n + tiles - 1) / tiles;",
           "const int64_t per = n / tiles;", online("uoro"),
           "slices rounded down (UORO's and KF-RTRL's tiles): the tail of a sample's row is never written"),
    Mutant("sign-stride-too-long", "sign_feedback_kernel.cu",
           "const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;",
           "const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads * 2;", SIGN,
           "a grid-stride loop that skips every other stride"),
    Mutant("sign-shifted-index", "sign_feedback_kernel.cu",
           "random_sign(to_acc(w[i]), p, i)", "random_sign(to_acc(w[i]), p, i + 1)", SIGN,
           "wrong index into the counter-based RNG"),
    Mutant("hebbian-no-sync-in-block-reduce", "hebbian_kernel.cu",
           "  if (lane == 0) scratch[warp] = v;\n  __syncthreads();\n",
           "  if (lane == 0) scratch[warp] = v;\n", HEBBIAN,
           "drop a __syncthreads: warp partials read before every warp has written its own"),
    Mutant("hebbian-argmax-ignores-ties", "hebbian_kernel.cu",
           "if (oi >= 0 && (idx < 0 || ov > v || (ov == v && oi < idx))) { v = ov; idx = oi; }\n  }\n  if (lane",
           "if (oi >= 0 && (idx < 0 || ov > v)) { v = ov; idx = oi; }\n  }\n  if (lane", HEBBIAN,
           "a warp's argmax no longer prefers the lower index among equal values"),
    Mutant("hebbian-krotov-rank-short", "hebbian_kernel.cu",
           "for (int64_t r = 2; r <= ap.rank && prev_idx >= 0; ++r) {",
           "for (int64_t r = 2; r < ap.rank && prev_idx >= 0; ++r) {", HEBBIAN,
           "<= to <: Krotov's anti-Hebbian unit is one rank too high"),
    Mutant("hebbian-signed-peak", "hebbian_kernel.cu",
           "peak = max(peak, fabs(d));", "peak = max(peak, d);", HEBBIAN,
           "the normalisation's peak forgets the absolute value"),
    Mutant("hebbian-power-stride-short", "hebbian_kernel.cu",
           "       i += int64_t(gridDim.x) * kThreads) {",
           "       i += int64_t(gridDim.x) * kThreads * 2) {", HEBBIAN,
           "the power kernel's grid-stride loop skips every other stride"),
    Mutant("pc-error-skips-last-column", "predictive_coding_kernel.cu",
           "for (int64_t c = lane; c < n; c += kWarp) e[c] = a[c] - mu[c];",
           "for (int64_t c = lane; c < n - 1; c += kWarp) e[c] = a[c] - mu[c];", PC,
           "a hidden layer's last error column keeps the prediction"),
    Mutant("warp-sum-skips-last-level", "warp.cuh",
           "  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);",
           "  for (int o = kWarp / 2; o > 1; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);", PC,
           "> 0 to > 1: predictive coding's softmax denominator misses half the lanes"),
    Mutant("pc-no-error-refresh", "predictive_coding_kernel.cu",
           "    if (p.refresh_error) e[c] += now - old;\n", "", PC,
           "errors not refreshed after a state step (stale until the next error pass)"),
    Mutant("pc-state-row-stride-ignored", "predictive_coding_kernel.cu",
           "  T* a = static_cast<T*>(p.state[k]) + r * p.state_row_stride[k];",
           "  T* a = static_cast<T*>(p.state[k]) + r * n;", PC,
           "strided state rows read and written as if contiguous"),
    Mutant("pc-row-stride-short", "predictive_coding_kernel.cu",
           "       r < p.batch; r += warps) {\n    for (int k = 0; k < p.n_hidden; ++k) {",
           "       r < p.batch; r += 2 * warps) {\n    for (int k = 0; k < p.n_hidden; ++k) {", PC,
           "the state pass's row loop skips every other stride of the grid"),
    # --- target propagation ---
    Mutant("tp-noisy-reads-row-0", "target_prop_kernel.cu",
           "static_cast<const T*>(p.h)[(r % p.batch) * p.width + j]",
           "static_cast<const T*>(p.h)[j]", TP,
           "every noise sample is added to batch row 0's input, not its own row's"),
    Mutant("tp-reduce-skips-last-row", "target_prop_kernel.cu",
           "      for (int64_t r = first; r < last; ++r) {",
           "      for (int64_t r = first; r < last - 1; ++r) {", TP,
           "each reduction chunk leaves its last row out of dc and the loss"),
    Mutant("tp-gate-ignored", "target_prop_kernel.cu",
           "  const T q = p.gate == nullptr ? T(1) : static_cast<const T*>(p.gate)[b];",
           "  const T q = T(1);", TP,
           "the gated maps run as if ungated (q = 1)"),
    Mutant("tp-residual-not-written", "target_prop_kernel.cu",
           "          *a = v;\n", "", TP,
           "DTP's residual r = u V^T + c - x summed but not stored: dV uses u V^T + c"),
]

# KF-RTRL (kfrtrl_kernel.cu): the rank-1 reduction and update, the rank >= 2 terms.
MUTANTS += [
    Mutant("kfrtrl-no-immediate-term", "kfrtrl_kernel.cu",
           "new_a * (i == k ? s.alpha * s.dphi[k] : scalar_t(0));",
           "new_a * (i == k + 1 ? s.alpha * s.dphi[k] : scalar_t(0));", online("kfrtrl"),
           "the immediate term alpha D off the diagonal"),
    Mutant("kfrtrl-terms-first-factor-only", "kfrtrl_kernel.cu",
           "u_out[o] = j < q.rank ? s.u[j * cols + c] : s.v(c);",
           "u_out[o] = j < q.rank ? s.u[c] : s.v(c);", online("kfrtrl"),
           "every kept u term copies factor 0"),
    Mutant("kfrtrl-ja-wrong-row", "kfrtrl_kernel.cu",
           "const int64_t k = (p % square) / hidden;",
           "const int64_t k = (p % square) % hidden;", online("kfrtrl"),
           "J A scales by phi' of the column unit, not the row's"),
]

META = ["tests/test_meta_plastic.py"]
MUTANTS += [
    Mutant("meta-forward-row-stride-short", "meta_kernel.cu",
           "       row += int64_t(gridDim.x) * kWarps) {\n    const int64_t b = row / q.n_out;\n"
           "    const T eta = rate_of<T>(q.rate, b, q.eta), keep",
           "       row += 2 * int64_t(gridDim.x) * kWarps) {\n    const int64_t b = row / q.n_out;\n"
           "    const T eta = rate_of<T>(q.rate, b, q.eta), keep", META,
           "the forward step's grid-stride loop skips every other stride: rows keep their old trace"),
    Mutant("meta-backward-keeps-h-t", "meta_kernel.cu",
           "        h[j] = h_prev;\n", "", META,
           "the backward never recomputes H_(t-1): every step sees H_T"),
    Mutant("meta-inputs-drop-trace-term", "meta_kernel.cu",
           " + eta * ys[row] * gs[row * n + j];", ";", META,
           "dL/dp misses the path through the trace update (eta G^T y)"),
    Mutant("meta-weights-no-decay", "meta_kernel.cu",
           "gs[b * plane + s] = keep * gs[b * plane + s] + a * outer;",
           "gs[b * plane + s] = gs[b * plane + s] + a * outer;", META,
           "dL/dH_(t-1) forgets the (1 - eta) decay"),
]

# Forward-Forward (forward_forward_kernel.cu): the warp sums, the row loops, the passes' wiring.
FF = ["tests/test_forward_forward_op.py"]
MUTANTS += [
    Mutant("ff-short-warp-sum", "forward_forward_kernel.cu",
           "  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);",
           "  for (int o = kWarp / 2; o > 1; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);", FF,
           "> 0 to > 1: a row's sum of squares misses half the lanes"),
    Mutant("ff-pair-stride-short", "forward_forward_kernel.cu",
           "       i += int64_t(gridDim.x) * kWarps) {",
           "       i += 2 * int64_t(gridDim.x) * kWarps) {", FF,
           "the layer pass's grid-stride loop skips every other stride: pairs keep their pre-activations"),
    Mutant("ff-negatives-read-positives", "forward_forward_kernel.cu",
           "r < p.batch ? p.pos : p.neg", "p.pos", FF,
           "the negative rows normalise the positive batch's data"),
    Mutant("ff-next-not-normalised", "forward_forward_kernel.cu",
           "if (next != nullptr) next[j] = a * inv;", "if (next != nullptr) next[j] = a;", FF,
           "the next layer reads the raw activity, not its normalisation"),
    Mutant("ff-delta-no-derivative", "forward_forward_kernel.cu",
           "z[j] = scale * a * predictive_coding::activate_derivative<kAct>(z[j], slope);",
           "z[j] = scale * a;", FF, "delta forgets f'(z)"),
]


class EmulatedBuild:
    """The checkout's plain emulated build, as ninja recorded it: how each
    object was compiled, and the objects the extension links."""

    def __init__(self, root: Path):
        self.root = root
        variant = root / "build" / "emulated" / "variant"
        if not variant.exists() or variant.read_text() != "plain":
            sys.exit(f"mutants: no plain emulated build in {root} (build it with LOCALGRAD_CUDA_EMULATION=only "
                     "python setup.py build_ext --inplace; a sanitizer build does not do)")
        ninja = [p for p in root.glob("build/temp.*/build.ninja") if "_C_emulated" in p.read_text()]
        if len(ninja) != 1:
            sys.exit(f"mutants: expected one build.ninja of localgrad._C_emulated under {root}/build, found {ninja}")
        self.vars, self.compile_rule, self.objects = {}, None, {}
        lines = ninja[0].read_text().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("rule compile"):
                self.compile_rule = lines[i + 1].strip().removeprefix("command = ")
            elif line.startswith("build ") and ": compile " in line:
                out, src = line[len("build "):].split(": compile ")
                self.objects[Path(src.strip()).name] = Path(out.strip())
            elif " = " in line and not line.startswith(" "):
                key, value = line.split(" = ", 1)
                self.vars[key.strip()] = value
        if self.compile_rule is None or not self.objects:
            sys.exit(f"mutants: could not read the compile rule and objects from {ninja[0]}")
        missing = [str(o) for o in self.objects.values() if not o.exists()]
        if missing:
            sys.exit(f"mutants: objects of the emulated build are missing: {missing[:3]}")

    def compile_command(self, wrapper: Path, obj: Path, scratch: Path) -> str:
        # Headers come from the scratch copy too, so the object sees one tree.
        flags = {k: v.replace(f"-I{self.root}/csrc", f"-I{scratch}/csrc") for k, v in self.vars.items()}
        cmd = self.compile_rule.replace("$out.d", f"{obj}.d").replace("$in", str(wrapper)).replace("$out", str(obj))
        for key in ("post_cflags", "cflags", "cxx"):  # longest names first: $cflags is inside $post_cflags
            cmd = cmd.replace(f"${key}", flags.get(key, ""))
        return cmd

    def link_command(self, replaced: dict[str, Path], out: Path) -> list[str]:
        import torch.utils.cpp_extension as ext

        cxx = shlex.split(self.vars.get("cxx", "c++"))
        objects = [str(replaced.get(name, o)) for name, o in sorted(self.objects.items())]
        libs = ["-L" + d for d in ext.library_paths()] + ["-lc10", "-ltorch", "-ltorch_cpu", "-ltorch_python"]
        return [*cxx, "-shared", "-fPIC", *objects, *libs, "-fopenmp", "-pthread", "-o", str(out)]


class Scratch:
    """A worker's copy: csrc/ (the mutated file lives here), the localgrad
    package with its built extensions, tests/ and pyproject.toml (pytest's
    settings). Tests run there with it first on PYTHONPATH."""

    def __init__(self, root: Path, parent: Path, index: int):
        self.path = parent / f"worker{index}"
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for name in ("csrc", "localgrad", "tests"):
            shutil.copytree(root / name, self.path / name, ignore=ignore, symlinks=True)
        shutil.copy2(root / "pyproject.toml", self.path / "pyproject.toml")
        (self.path / "build" / "emulated").mkdir(parents=True)
        self.extension = self.path / "localgrad" / ("_C_emulated" + sysconfig.get_config_var("EXT_SUFFIX"))
        if not self.extension.exists():
            sys.exit(f"mutants: {self.extension.name} is not built in {root}/localgrad")

    def env(self, base: dict) -> dict:
        return dict(base, PYTHONPATH=os.pathsep.join([str(self.path), base.get("PYTHONPATH", "")]).rstrip(os.pathsep))


def check_scratch_is_used(scratch: Scratch, env: dict):
    """The copy, not the checkout's editable install, must be what the tests
    import; otherwise every mutant would 'survive' on the original code."""
    probe = "import localgrad, sys; print(localgrad.__file__)"
    r = subprocess.run([sys.executable, "-c", probe], cwd=scratch.path, env=env, capture_output=True, text=True)
    if r.returncode != 0 or not Path(r.stdout.strip()).resolve().is_relative_to(scratch.path.resolve()):
        sys.exit(f"mutants: the scratch copy's localgrad is not the one imported ({r.stdout.strip()} {r.stderr[-500:]})")


def kernel_files(m: Mutant) -> list[str]:
    """The kernel files a mutation reaches: its own .cu, or every .cu that
    includes the shared header (.cuh) it mutates."""
    if m.file.endswith(".cu"):
        return [m.file]
    return sorted(p.name for p in (ROOT / "csrc" / "cuda").glob("*.cu") if f'#include "{m.file}"' in p.read_text())


def build_mutant(build: EmulatedBuild, scratch: Scratch, m: Mutant) -> tuple[bool, str]:
    """Mutates the scratch copy's file, compiles the kernel files it reaches,
    links the extension in the copy; the copy's file is put back afterwards."""
    source = scratch.path / "csrc" / "cuda" / m.file
    original = source.read_text()
    kernels = kernel_files(m)
    if not kernels:
        return False, f"no kernel file includes {m.file}"
    replaced = {}
    try:
        source.write_text(original.replace(m.old, m.new))
        for kernel in kernels:
            wrapper_name = "cuda_" + Path(kernel).stem + ".cpp"
            if wrapper_name not in build.objects:
                return False, f"no object of {wrapper_name} in the emulated build"
            wrapper = scratch.path / "build" / "emulated" / wrapper_name
            shutil.copy2(ROOT / "build" / "emulated" / wrapper_name, wrapper)  # includes ../../csrc/cuda/<file>
            obj = scratch.path / "build" / (Path(kernel).stem + ".o")
            compiled = subprocess.run(build.compile_command(wrapper, obj, scratch.path), shell=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
            if compiled.returncode != 0:
                return False, compiled.stdout[-2000:]
            replaced[wrapper_name] = obj
        linked = subprocess.run(build.link_command(replaced, scratch.extension), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
        if linked.returncode != 0:
            return False, linked.stdout[-2000:]
        return True, ""
    finally:
        source.write_text(original)


def run_tests(mutant, scratch, env, timeout):
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-m", "emulated", "-p", "no:cacheprovider", "-p", "no:xdist",
           *mutant.tests]  # fmt: skip
    try:
        r = subprocess.run(cmd, cwd=scratch.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        return True, "timed out (a hang counts as caught)"
    last = [line for line in r.stdout.strip().splitlines() if line.strip()][-1:] or [""]
    if r.returncode == 5:
        return False, "no emulated tests selected"
    return r.returncode != 0, last[0][-110:]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutant's tests")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="mutants built and tested side by side (default: 2, or 1 on one core)")  # fmt: skip
    args = parser.parse_args()
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:32s} {m.file:26s} {m.why}")
        return 0
    if args.jobs < 1:
        sys.exit(f"--jobs must be at least 1, got {args.jobs}")
    by_name = {m.name: m for m in MUTANTS}
    unknown = [n for n in args.names if n not in by_name]
    if unknown:
        sys.exit(f"unknown mutants: {unknown}")
    chosen = [by_name[n] for n in args.names] if args.names else MUTANTS

    build = EmulatedBuild(ROOT)
    base_env = dict(os.environ, LOCALGRAD_CUDA_EMULATION="only", LOCALGRAD_REQUIRE_EMULATION="1",
                    OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))  # fmt: skip
    for key in ("LOCALGRAD_EMULATION_SANITIZER", "LOCALGRAD_EMULATION_COVERAGE", "LOCALGRAD_TEST_BUDGET_S"):
        base_env.pop(key, None)
    broken = []
    runnable = []
    for m in chosen:
        found = (ROOT / "csrc" / "cuda" / m.file).read_text().count(m.old)
        if found != 1:
            broken.append(m.name)
            print(f"BROKEN  {m.name}: snippet found {found} times in {m.file}")
        else:
            runnable.append(m)

    results = []
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="localgrad-mutants-") as tmp:
        jobs = min(args.jobs, max(len(runnable), 1))
        free = queue.Queue()
        for i in range(jobs):
            scratch = Scratch(ROOT, Path(tmp), i)
            check_scratch_is_used(scratch, scratch.env(base_env))
            free.put(scratch)

        def one(m):
            scratch = free.get()
            try:
                t0 = time.time()
                ok, log = build_mutant(build, scratch, m)
                if not ok:
                    return m, None, f"does not build\n{log}", time.time() - t0
                caught, detail = run_tests(m, scratch, scratch.env(base_env), args.timeout)
                return m, caught, detail, time.time() - t0
            finally:
                free.put(scratch)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for m, caught, detail, took in pool.map(one, runnable):
                if caught is None:
                    broken.append(m.name)
                    print(f"BROKEN  {m.name}: {detail}", flush=True)
                    continue
                results.append((m, caught))
                print(f"{'caught ' if caught else 'SURVIVED'} {m.name:32s} {took:5.0f} s  {detail}", flush=True)
    caught = sum(c for _, c in results)
    print(f"mutation score: {caught}/{len(results)} caught"
          f" ({100 * caught / max(len(results), 1):.0f} %) in {time.time() - start:.0f} s with {args.jobs} job(s)")  # fmt: skip
    if broken:
        print(f"broken mutants: {broken}")
        return 2
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
