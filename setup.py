"""Builds localgrad._C, the compiled ops, with torch.utils.cpp_extension.

Environment:
  LOCALGRAD_CUDA=auto|0|1   auto (default) builds the CUDA backend when the
                            installed torch is a CUDA build and a CUDA toolkit
                            is found; 1 insists (and fails clearly); 0 skips it.
  TORCH_CUDA_ARCH_LIST      GPU architectures; defaults to the visible GPU, or
                            to "8.0;9.0+PTX" when no GPU is visible.
  CUDA_HOME                 toolkit root, when it cannot be found on its own.
  MAX_JOBS                  parallel compile jobs (default: number of cores).
  LOCALGRAD_CUDA_EMULATION=1|only
                            also (only: just) builds localgrad._C_emulated: the CUDA kernels
                            and glue compiled by the host compiler against the
                            host emulation of CUDA (csrc/emulation), registered
                            for CPU tensors as torch.ops.localgrad_emulated.
  LOCALGRAD_EMULATION_SANITIZER=address|thread
                            builds localgrad._C_emulated with -fsanitize=...
                            (run it with the sanitizer's runtime preloaded; see
                            tests/emulation/README.md).

Always install with `pip install --no-build-isolation ...`: an isolated build
fetches another torch and compiles against its ABI.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"
DEFAULT_ARCH_LIST = "8.0;9.0+PTX"


def fail(message):
    sys.exit(f"localgrad build: {message}")


def is_toolkit_root(path):
    return bool(path) and (Path(path) / "bin" / "nvcc").exists() and (
        Path(path) / "include" / "cuda_runtime_api.h"
    ).exists()


def find_cuda_home():
    """The toolkit root, or None. The nvcc on PATH may be a wrapper script,
    so ask nvcc itself where its toolkit is (its dry run prints TOP=...)."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if is_toolkit_root(os.environ.get(var)):
            return os.environ[var]
    nvcc = shutil.which("nvcc")
    if nvcc:
        try:
            dry = subprocess.run(
                [nvcc, "--dryrun", "--version"], capture_output=True, text=True, timeout=60
            )
            match = re.search(r"^#\$ TOP=(.+)$", dry.stdout + dry.stderr, re.MULTILINE)
            if match and is_toolkit_root(os.path.realpath(match.group(1).strip())):
                return os.path.realpath(match.group(1).strip())
        except (OSError, subprocess.SubprocessError):
            pass
        guess = Path(os.path.realpath(nvcc)).parent.parent
        if is_toolkit_root(guess):
            return str(guess)
    for guess in ["/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)]:
        if is_toolkit_root(guess):
            return guess
    return None


def want_cuda():
    mode = os.environ.get("LOCALGRAD_CUDA", "auto").strip().lower()
    if mode not in ("auto", "0", "1"):
        fail(f"LOCALGRAD_CUDA must be auto, 0 or 1, got {mode!r}")
    if mode == "0":
        return False, None
    import torch

    cuda_home = find_cuda_home()
    if torch.version.cuda is None:
        if mode == "1":
            fail(
                f"LOCALGRAD_CUDA=1, but the installed torch {torch.__version__} is a CPU "
                "build; install a CUDA build of torch, or build with LOCALGRAD_CUDA=0"
            )
        return False, None
    if cuda_home is None:
        if mode == "1":
            fail(
                "LOCALGRAD_CUDA=1, but no CUDA toolkit was found (looked at CUDA_HOME, "
                "CUDA_PATH, the nvcc on PATH and /usr/local/cuda*); set CUDA_HOME to the "
                "toolkit root"
            )
        print("localgrad build: no CUDA toolkit found; building the CPU backend only")
        return False, None
    return True, cuda_home


def version():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


def extension():
    with_cuda, cuda_home = want_cuda()
    if with_cuda:
        # cpp_extension reads CUDA_HOME when it is first imported.
        os.environ["CUDA_HOME"] = cuda_home
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    sources = [str(p.relative_to(ROOT)) for p in sorted(CSRC.glob("*.cpp"))]
    sources += [str(p.relative_to(ROOT)) for p in sorted((CSRC / "cpu").glob("*.cpp"))]
    macros = [("LOCALGRAD_VERSION", f'"{version()}"')]
    cxx = ["-O3", "-g0", "-fopenmp"]
    link = ["-fopenmp"]
    if not with_cuda:
        return CppExtension(
            "localgrad._C",
            sources,
            define_macros=macros,
            extra_compile_args={"cxx": cxx},
            extra_link_args=link,
        )

    import torch

    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCH_LIST
    arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST") or ";".join(
        f"{major}.{minor}" for major, minor in {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
    )
    sources += [str(p.relative_to(ROOT)) for p in sorted((CSRC / "cuda").glob("*.cpp"))]
    sources += [str(p.relative_to(ROOT)) for p in sorted((CSRC / "cuda").glob("*.cu"))]
    macros += [("LOCALGRAD_WITH_CUDA", None), ("LOCALGRAD_CUDA_ARCH_LIST", f'"{arch_list}"')]
    print(f"localgrad build: CUDA backend on, toolkit {cuda_home}, arch list {arch_list}")
    return CUDAExtension(
        "localgrad._C",
        sources,
        define_macros=macros,
        extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "-lineinfo", "-std=c++17"]},
        extra_link_args=link,
    )


def emulation_sources():
    """The emulated extension's translation units: wrappers under
    build/emulated/ that include the real sources, so that its objects never
    collide with localgrad._C's (same source, other macros) and the .cu files
    compile as C++ after the emulation's cuda_runtime.h, as nvcc would include
    the real one."""
    out_dir = ROOT / "build" / "emulated"
    out_dir.mkdir(parents=True, exist_ok=True)
    real = sorted(CSRC.glob("*.cpp"))
    real += sorted((CSRC / "cuda").glob("*.cpp"))
    real += sorted((CSRC / "cuda").glob("*.cu"))
    real += [CSRC / "emulation" / "cuda_emulation.cpp"]
    sources = []
    for path in real:
        rel = path.relative_to(CSRC)
        name = "_".join(rel.with_suffix("").parts) + ".cpp"
        include = os.path.relpath(path, out_dir)
        prelude = "#include <cuda_runtime.h>\n" if path.suffix == ".cu" else ""
        text = f"// generated by setup.py: {rel} for localgrad._C_emulated\n{prelude}#include \"{include}\"\n"
        wrapper = out_dir / name
        if not wrapper.exists() or wrapper.read_text() != text:
            wrapper.write_text(text)  # unchanged wrappers keep their mtime: incremental builds
        sources.append(str(wrapper.relative_to(ROOT)))
    return sources


def emulation_mode():
    mode = os.environ.get("LOCALGRAD_CUDA_EMULATION", "0").strip().lower() or "0"
    if mode not in ("0", "1", "only"):
        fail(f"LOCALGRAD_CUDA_EMULATION must be 0, 1 or only, got {mode!r}")
    return mode


def emulated_extension():
    mode = emulation_mode()
    if mode == "0":
        return None
    from torch.utils.cpp_extension import CppExtension

    sanitizer = os.environ.get("LOCALGRAD_EMULATION_SANITIZER", "").strip().lower()
    if sanitizer not in ("", "address", "thread"):
        fail(f"LOCALGRAD_EMULATION_SANITIZER must be address or thread, got {sanitizer!r}")
    macros = [
        ("LOCALGRAD_VERSION", f'"{version()}"'),
        ("LOCALGRAD_CUDA_EMULATION", None),
    ]
    include_dirs = [str(CSRC / "emulation" / "include"), str(CSRC / "cuda"), str(CSRC)]
    sources = emulation_sources()
    objects, link = [], ["-fopenmp", "-pthread"]
    if sanitizer:
        # Only the kernels and the emulator are instrumented, compiled here;
        # the glue's objects are the plain emulated build's (same flags), so a
        # sanitizer build recompiles 10 small files, not the torch glue.
        device_code = [w for w in sources if w.endswith("_kernel.cpp") or "cuda_emulation" in w]
        sources = [w for w in sources if w not in device_code]
        objects = compile_instrumented(device_code, sanitizer, macros, include_dirs)
        link = [f"-fsanitize={sanitizer}", "-fopenmp", "-pthread"]
    # The variant stamp: switching between plain and sanitizer builds relinks.
    stamp = ROOT / "build" / "emulated" / "variant"
    if not stamp.exists() or stamp.read_text() != (sanitizer or "plain"):
        stamp.write_text(sanitizer or "plain")
    depends = [str(p) for p in CSRC.rglob("*") if p.suffix in (".h", ".cuh", ".cu", ".cpp")]
    print(f"localgrad build: emulated CUDA backend on (sanitizer: {sanitizer or 'none'})")
    return CppExtension(
        "localgrad._C_emulated",
        sources,
        include_dirs=include_dirs,
        define_macros=macros,
        extra_compile_args={"cxx": ["-O2", "-g0", "-fopenmp", "-pthread"]},
        extra_objects=objects,
        extra_link_args=link,
        depends=depends + objects + [str(stamp)],
    )


def compile_instrumented(wrappers, sanitizer, macros, include_dirs):
    """Compiles the emulated build's device code with -fsanitize=...; a file
    is recompiled when it or any csrc/ header is newer than its object."""
    out_dir = ROOT / "build" / f"emulated-{sanitizer}"
    out_dir.mkdir(parents=True, exist_ok=True)
    newest = max(p.stat().st_mtime for p in CSRC.rglob("*") if p.is_file())
    cxx = os.environ.get("CXX", "c++").split()
    flags = ["-std=c++17", "-O1", "-g1", "-fno-omit-frame-pointer", f"-fsanitize={sanitizer}", "-fPIC", "-pthread"]
    flags += [f"-D{k}" if v is None else f"-D{k}={v}" for k, v in macros]
    flags += [f'-DLOCALGRAD_EMULATION_SANITIZER="{sanitizer}"']
    flags += [f"-I{d}" for d in include_dirs]
    objects = []
    for wrapper in wrappers:
        src = ROOT / wrapper
        obj = out_dir / (src.stem + ".o")
        if not obj.exists() or obj.stat().st_mtime < max(newest, src.stat().st_mtime):
            print(f"localgrad build: {src.name} with -fsanitize={sanitizer}")
            subprocess.run([*cxx, *flags, "-c", str(src), "-o", str(obj)], check=True)
        objects.append(str(obj))
    return objects


def build_ext_class():
    from torch.utils.cpp_extension import BuildExtension

    if "MAX_JOBS" not in os.environ:
        os.environ["MAX_JOBS"] = str(os.cpu_count() or 1)
    return BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)


setup(
    ext_modules=[
        e
        for e in (None if emulation_mode() == "only" else extension(), emulated_extension())
        if e is not None
    ],
    cmdclass={"build_ext": build_ext_class()},
)
