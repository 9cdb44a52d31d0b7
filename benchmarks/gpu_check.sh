#!/usr/bin/env bash
# Everything localgrad checks on a machine with an NVIDIA GPU, in one script:
#   info       nvidia-smi, toolkit, torch and sanitizer versions
#   build      LOCALGRAD_CUDA=1 editable install into the torch already there
#              (no downloads: --no-build-isolation --no-deps --no-index)
#   test       the full pytest suite with LOCALGRAD_REQUIRE_CUDA=1 (a missing
#              GPU or CUDA build fails instead of skipping); junit xml
#   memcheck   compute-sanitizer --tool memcheck over the CUDA tests
#   racecheck  compute-sanitizer --tool racecheck over the CUDA tests
#   bench      every benchmarks/bench_*.py --device cuda --json <results>/<name>.json
# A failing step does not stop the later ones; the script exits non-zero at
# the end if any step failed, after a summary of which.
#
#   bash benchmarks/gpu_check.sh
#
# Results (logs, sanitizer output, junit xml, benchmark JSON, summary.txt) go
# to ${OUT:-benchmarks/results}. On the lent device machine $OUT comes back,
# at most 8 files: this script writes 6 plus one JSON per benchmark, and packs
# all but summary.txt into results.tar.gz when that would be more.
#
# Environment:
#   STEPS             steps to run, in order (default: all of the above). The
#                     device machine stops a command after 10 minutes; if one
#                     call does not fit, split it, e.g. STEPS="info build test"
#                     then STEPS="build memcheck racecheck bench" (a warm
#                     machine keeps the build, so the second build is quick).
#   PYTHON            interpreter with a CUDA torch (default python3)
#   PYTEST_ARGS       extra pytest arguments for the test step (e.g. -m "not slow")
#   SANITIZER_PYTEST_ARGS  which tests the sanitizers run (default: -m cuda);
#                     initcheck and synccheck are accepted as steps too
#   BENCHES           which benchmarks the bench step runs, names without .py
#                     (default: every benchmarks/bench_*.py), e.g.
#                     BENCHES="bench_dfa bench_eqprop" to split them over calls
#   STEP_TIMEOUT      seconds any one command may run (default 1500)
#   WHEELS            folder of extra wheels to install first, offline, into a
#                     private --target dir on PYTHONPATH (default .whl), for test
#                     dependencies the machine lacks (expecttest, mlxtend, mnist1d)
#   MAX_JOBS          parallel compile jobs (default: number of cores)
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD

PYTHON=${PYTHON:-python3}
RESULTS=${OUT:-$ROOT/benchmarks/results}
STEPS=${STEPS:-info build test memcheck racecheck bench}
STEP_TIMEOUT=${STEP_TIMEOUT:-1500}
WHEELS=${WHEELS:-$ROOT/.whl}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
export PYTHONUNBUFFERED=1
export PIP_DISABLE_PIP_VERSION_CHECK=1

mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
LOG_BUILD=$RESULTS/build.log
LOG_PYTEST=$RESULTS/pytest.log
JUNIT=$RESULTS/pytest-junit.xml
LOG_SANITIZER=$RESULTS/sanitizer.log
LOG_BENCH=$RESULTS/bench.log
SUMMARY=$RESULTS/summary.txt
rm -f "$LOG_BUILD" "$LOG_PYTEST" "$JUNIT" "$LOG_SANITIZER" "$LOG_BENCH" "$SUMMARY" \
  "$RESULTS/results.tar.gz"

STEP_NAMES=()
STEP_STATUS=()
STEP_SECONDS=()
STEP_NOTES=()
BUILD_OK=unknown   # unknown: no build step this run (an earlier build is used)

say() { printf '%s\n' "$*"; }
header() { printf '\n==== [%s] %s ====\n' "$(date -u +%H:%M:%S)" "$*"; }

record() {  # name status seconds note
  STEP_NAMES+=("$1")
  STEP_STATUS+=("$2")
  STEP_SECONDS+=("$3")
  STEP_NOTES+=("$4")
  say "---- $1: $2 (${3} s)${4:+: $4}"
}

# Runs a command under the step timeout, appending its output to a log and
# echoing it; returns the command's exit status (124/137 when it timed out).
logged() {  # log cmd...
  local log=$1
  shift
  {
    printf '\n$'
    printf ' %q' "$@"
    printf '\n'
  } >>"$log"
  timeout -k 30 "$STEP_TIMEOUT" "$@" 2>&1 | tee -a "$log"
  return "${PIPESTATUS[0]}"
}

# ---------------------------------------------------------------------------
step_info() {
  local problems=() t0=$SECONDS
  header "info"
  {
    say "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    say "commit: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo 'unknown (not a git checkout)')"
    say "host: $(uname -srm), $(nproc) cores"
  } | tee -a "$LOG_BUILD"
  if ! logged "$LOG_BUILD" nvidia-smi; then problems+=("nvidia-smi failed"); fi
  logged "$LOG_BUILD" nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.sm,clocks.max.sm \
    --format=csv || true
  if ! logged "$LOG_BUILD" nvcc --version; then problems+=("no nvcc"); fi
  if ! logged "$LOG_BUILD" compute-sanitizer --version; then problems+=("no compute-sanitizer"); fi
  if ! logged "$LOG_BUILD" "$PYTHON" - <<'EOF'
import sys
import torch
print("python", sys.version.split()[0], sys.executable)
print("torch", torch.__version__, "cuda", torch.version.cuda)
print("cuda available:", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"device 0: {p.name}, sm_{p.major}{p.minor}, {p.multi_processor_count} SMs, "
          f"{p.total_memory / 2**30:.1f} GiB")
sys.exit(0 if torch.cuda.is_available() else 1)
EOF
  then
    problems+=("torch sees no CUDA GPU")
  fi
  if ((${#problems[@]})); then
    record info FAIL $((SECONDS - t0)) "$(IFS=';'; echo "${problems[*]}")"
  else
    record info ok $((SECONDS - t0)) ""
  fi
}

install_wheels() {
  shopt -s nullglob
  local wheels=("$WHEELS"/*.whl)
  shopt -u nullglob
  ((${#wheels[@]})) || return 0
  local site=${TMPDIR:-/tmp}/localgrad-gpu-check-site
  say "installing ${#wheels[@]} carried wheel(s) from $WHEELS into $site"
  logged "$LOG_BUILD" "$PYTHON" -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target "$site" "${wheels[@]}" || return 1
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
}

check_build_info() {  # prints build_info; fails unless the CUDA kernels are in
  logged "$LOG_BUILD" "$PYTHON" - <<'EOF'
import json
import localgrad
info = localgrad.build_info()
print(json.dumps(info, indent=2))
assert info["cuda_kernels"], "localgrad was built without its CUDA kernels"
EOF
}

step_build() {
  local t0=$SECONDS note=""
  header "build (LOCALGRAD_CUDA=1, MAX_JOBS=$MAX_JOBS)"
  BUILD_OK=0
  if ! install_wheels; then
    record build FAIL $((SECONDS - t0)) "installing the wheels in $WHEELS failed"
    return
  fi
  if LOCALGRAD_CUDA=1 logged "$LOG_BUILD" "$PYTHON" -m pip install --no-build-isolation \
    --no-deps --no-index -v -e "$ROOT"; then
    :
  else
    # A read-only site-packages still allows an in-place build.
    say "pip install -e failed; trying an in-place build (setup.py build_ext --inplace)"
    if LOCALGRAD_CUDA=1 logged "$LOG_BUILD" "$PYTHON" setup.py build_ext --inplace; then
      export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
      note="pip install -e failed; built in place instead (see build.log)"
    else
      record build FAIL $((SECONDS - t0)) "the build failed (see build.log)"
      return
    fi
  fi
  if check_build_info; then
    BUILD_OK=1
    record build ok $((SECONDS - t0)) "$note"
  else
    record build FAIL $((SECONDS - t0)) "built, but build_info() has no CUDA kernels"
  fi
}

need_build() {  # name t0: records a skip when the build of this run failed
  if [[ $BUILD_OK == 0 ]]; then
    record "$1" FAIL 0 "skipped: the build failed"
    return 1
  fi
  if [[ $BUILD_OK == unknown ]] && ! check_build_info >/dev/null 2>&1; then
    record "$1" FAIL 0 "skipped: no CUDA build of localgrad importable (run the build step)"
    return 1
  fi
}

step_test() {
  local t0=$SECONDS rc extra=()
  header "test: full pytest suite, LOCALGRAD_REQUIRE_CUDA=1"
  need_build test || return
  # PYTEST_ARGS is split like a shell command line, so quoted -m/-k work.
  if [[ -n ${PYTEST_ARGS:-} ]]; then eval "extra=($PYTEST_ARGS)"; fi
  LOCALGRAD_REQUIRE_CUDA=1 logged "$LOG_PYTEST" "$PYTHON" -m pytest -q -rfEs \
    -p no:cacheprovider --junitxml="$JUNIT" "${extra[@]}" tests/
  rc=$?
  case $rc in
    0) record test ok $((SECONDS - t0)) "$(tail -n 1 "$LOG_PYTEST")" ;;
    5) record test FAIL $((SECONDS - t0)) "pytest collected no tests" ;;
    124 | 137) record test FAIL $((SECONDS - t0)) "timed out after ${STEP_TIMEOUT} s" ;;
    *) record test FAIL $((SECONDS - t0)) "pytest exit $rc: $(tail -n 1 "$LOG_PYTEST")" ;;
  esac
}

step_sanitizer() {  # tool
  local tool=$1 t0=$SECONDS rc select=() log part errors
  header "compute-sanitizer --tool $tool"
  need_build "$tool" || return
  eval "select=(${SANITIZER_PYTEST_ARGS:--m cuda})"
  part=$(mktemp)
  # Without the caching allocator every tensor is its own allocation, so an
  # access past a tensor's end is out of bounds for memcheck, not a read of a
  # neighbour in the same cached block.
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 LOCALGRAD_REQUIRE_CUDA=1 logged "$part" \
    compute-sanitizer --tool "$tool" --error-exitcode 86 --print-limit 50 \
    --target-processes all \
    "$PYTHON" -m pytest -q -p no:cacheprovider "${select[@]}" tests/
  rc=$?
  {
    printf '\n########## %s ##########\n' "$tool"
    cat "$part"
  } >>"$LOG_SANITIZER"
  errors=$(grep -E -o 'ERROR SUMMARY: [0-9]+' "$part" | awk '{s += $3} END {print s + 0}')
  if grep -q -E '^=+ .*(Device not supported|Unable to find injection library)' "$part"; then
    record "$tool" FAIL $((SECONDS - t0)) "compute-sanitizer could not run here (see sanitizer.log)"
  elif ((errors > 0)) || [[ $rc == 86 ]]; then
    record "$tool" FAIL $((SECONDS - t0)) "$errors error(s) reported (see sanitizer.log)"
  elif [[ $rc == 5 ]]; then
    record "$tool" FAIL $((SECONDS - t0)) "no tests selected by: ${select[*]}"
  elif [[ $rc == 124 || $rc == 137 ]]; then
    record "$tool" FAIL $((SECONDS - t0)) "timed out after ${STEP_TIMEOUT} s"
  elif [[ $rc != 0 ]]; then
    record "$tool" FAIL $((SECONDS - t0)) "pytest under the sanitizer exited $rc"
  elif ! grep -q 'ERROR SUMMARY: 0 errors' "$part"; then
    record "$tool" FAIL $((SECONDS - t0)) "no ERROR SUMMARY from compute-sanitizer"
  else
    record "$tool" ok $((SECONDS - t0)) "0 errors; $(grep -E '[0-9]+ (passed|failed)' "$part" | tail -n 1)"
  fi
  rm -f "$part"
}

step_bench() {
  local t0=$SECONDS bench name json failed=() ran=0
  header "benchmarks (--device cuda)"
  need_build bench || return
  shopt -s nullglob
  local benches=("$ROOT"/benchmarks/bench_*.py)
  shopt -u nullglob
  if [[ -n ${BENCHES:-} ]]; then
    benches=()
    for name in $BENCHES; do benches+=("$ROOT/benchmarks/${name%.py}.py"); done
  fi
  if ((${#benches[@]} == 0)); then
    record bench FAIL 0 "no benchmarks/bench_*.py found"
    return
  fi
  for bench in "${benches[@]}"; do
    name=$(basename "$bench" .py)
    json=$RESULTS/$name.json
    rm -f "$json"
    header "bench: $name"
    ran=$((ran + 1))
    if ! logged "$LOG_BENCH" "$PYTHON" "$bench" --device cuda --json "$json"; then
      failed+=("$name (exit)")
    elif [[ ! -s $json ]]; then
      failed+=("$name (no JSON)")
    fi
  done
  if ((${#failed[@]})); then
    record bench FAIL $((SECONDS - t0)) "failed: ${failed[*]}"
  else
    record bench ok $((SECONDS - t0)) "$ran benchmark(s), JSON in $RESULTS"
  fi
}

# ---------------------------------------------------------------------------
T_START=$SECONDS
say "localgrad GPU check in $ROOT; results in $RESULTS; steps: $STEPS"
for step in $STEPS; do
  case $step in
    info) step_info ;;
    build) step_build ;;
    test) step_test ;;
    memcheck | racecheck | initcheck | synccheck) step_sanitizer "$step" ;;
    bench) step_bench ;;
    *) record "$step" FAIL 0 "unknown step (known: info build test memcheck racecheck initcheck synccheck bench)" ;;
  esac
done

failed=()
{
  say "localgrad GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ), $((SECONDS - T_START)) s"
  say "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  say "gpu: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -n 1)"
  say ""
  for i in "${!STEP_NAMES[@]}"; do
    printf '%-10s %-4s %6s s  %s\n' "${STEP_NAMES[$i]}" "${STEP_STATUS[$i]}" \
      "${STEP_SECONDS[$i]}" "${STEP_NOTES[$i]}"
    [[ ${STEP_STATUS[$i]} == ok ]] || failed+=("${STEP_NAMES[$i]}")
  done
  say ""
  if ((${#failed[@]})); then
    say "GPU CHECK FAILED: ${failed[*]}"
  else
    say "GPU CHECK PASSED"
  fi
} >"$SUMMARY"

# The device machine returns at most 8 files from $OUT.
if [[ -n ${OUT:-} ]]; then
  mapfile -t files < <(cd "$RESULTS" && find . -type f ! -name summary.txt | sort)
  if ((${#files[@]} + 1 > 8)); then
    (cd "$RESULTS" && tar -czf results.tar.gz "${files[@]}" && rm -f "${files[@]}")
    say "packed ${#files[@]} result files into $RESULTS/results.tar.gz" | tee -a "$SUMMARY"
  fi
fi

echo
cat "$SUMMARY"
((${#failed[@]} == 0))
