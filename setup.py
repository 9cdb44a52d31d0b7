"""Builds localgrad._C, the compiled ops, with torch.utils.cpp_extension.

Environment:
  LOCALGRAD_CUDA=auto|0|1   auto (default) builds the CUDA backend when the
                            installed torch is a CUDA build and a CUDA toolkit
                            is found; 1 insists (and fails clearly); 0 skips it.
  TORCH_CUDA_ARCH_LIST      GPU architectures, e.g. "8.0;9.0+PTX"; defaults to
                            the visible GPUs (the newest +PTX), or, with no GPU
                            visible, to the installed torch's own list
                            (torch.cuda.get_arch_list()).
  CUDA_HOME                 toolkit root, when it cannot be found on its own.
  MAX_JOBS                  parallel compile jobs (default: the cores, fewer
                            when free memory is short: ~2 GiB per job).
  NVCC_THREADS              nvcc --threads: architectures of one .cu compiled
                            in parallel (default: nvcc's, one).
  LOCALGRAD_FATBIN_COMPRESS 1 (default) passes -Xfatbin -compress-all to nvcc
                            (smaller wheels); 0 leaves the fatbins uncompressed.
  LOCALGRAD_VERSION_LABEL   a PEP 440 local version label for the wheel:
                            "auto" gives the build's torch and CUDA, e.g.
                            0.1.0+pt214cu130 (0.1.0+pt213cpu for a CPU build);
                            unset or empty: none.
  LOCALGRAD_CUDA_EMULATION=1|only
                            also (only: just) builds localgrad._C_emulated: the CUDA kernels
                            and glue compiled by the host compiler against the
                            host emulation of CUDA (csrc/emulation), registered
                            for CPU tensors as torch.ops.localgrad_emulated.
  LOCALGRAD_EMULATION_SANITIZER=address|thread
                            builds localgrad._C_emulated with -fsanitize=...
                            (run it with the sanitizer's runtime preloaded; see
                            tests/emulation/README.md).

The build writes localgrad/_build_config.py (torch, CUDA, arch list, C++ ABI of
this build), which localgrad reads to explain a failed import of _C.

Always install with `pip install --no-build-isolation ...`: an isolated build
fetches another torch and compiles against its ABI.
"""

import concurrent.futures
import glob
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"
# Filled by extension(), written by the build_ext command as _build_config.py.
BUILD_CONFIG = {}


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


def base_version():
    """localgrad/__init__.py's __version__, read without importing the package."""
    text = (ROOT / "localgrad" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    if not match:
        fail("localgrad/__init__.py has no line `__version__ = \"X.Y.Z\"`")
    return match.group(1)


def local_label(with_cuda):
    """LOCALGRAD_VERSION_LABEL resolved: "pt214cu130" for auto, or as given."""
    label = os.environ.get("LOCALGRAD_VERSION_LABEL", "").strip()
    if label.lower() == "auto":
        import torch

        major, minor = torch.__version__.split("+")[0].split(".")[:2]
        backend = "cu" + torch.version.cuda.replace(".", "") if with_cuda else "cpu"
        label = f"pt{major}{minor}{backend}"
    if label and not re.fullmatch(r"[a-z0-9]+(\.[a-z0-9]+)*", label):
        fail(f"LOCALGRAD_VERSION_LABEL must be letters and digits joined by dots, got {label!r}")
    return label


def version():
    """The package version: __version__ plus the local label, if any. Valid
    once extension() has run."""
    return BUILD_CONFIG.get("version") or base_version()


def arch_from_torch(name):
    """One entry of torch.cuda.get_arch_list() in TORCH_CUDA_ARCH_LIST form:
    sm_90 -> 9.0, sm_90a -> 9.0a, sm_120 -> 12.0; None for other names."""
    match = re.fullmatch(r"(?:sm|compute)_(\d+)(\d)([a-z]?)", name)
    return f"{match.group(1)}.{match.group(2)}{match.group(3)}" if match else None


def default_arch_list():
    """The arch list a build uses when TORCH_CUDA_ARCH_LIST is unset: the
    visible GPUs, the newest with PTX (what cpp_extension itself would pick);
    with no GPU visible, the installed torch's own list, so that the build runs
    wherever that torch runs (compute_XX entries of torch become +PTX)."""
    import torch

    if torch.cuda.is_available():
        caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
        archs = [f"{major}.{minor}" for major, minor in caps]
        archs[-1] += "+PTX"
        return ";".join(archs)
    archs = {}
    for name in torch.cuda.get_arch_list():
        arch = arch_from_torch(name)
        if arch is not None:
            archs[arch] = archs.get(arch, False) or name.startswith("compute_")
    if not archs:
        fail(
            f"torch {torch.__version__} lists no CUDA architectures and no GPU is visible; "
            "set TORCH_CUDA_ARCH_LIST, e.g. \"8.0;9.0+PTX\""
        )
    order = sorted(archs, key=lambda a: tuple(int(v) for v in re.findall(r"\d+", a)))
    return ";".join(a + ("+PTX" if archs[a] else "") for a in order)


def resolved_arch_list():
    """TORCH_CUDA_ARCH_LIST or the default, normalised to "a;b;c+PTX"; also put
    back into the environment, so that what is recorded is what is built."""
    given = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip().replace(" ", ";")
    arch_list = ";".join(a for a in (given or default_arch_list()).split(";") if a)
    os.environ["TORCH_CUDA_ARCH_LIST"] = arch_list
    return arch_list


def nvcc_version(cuda_home):
    try:
        out = subprocess.run(
            [str(Path(cuda_home) / "bin" / "nvcc"), "--version"], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"release (\d+\.\d+)", out)
    return match.group(1) if match else None


def nvcc_flags():
    flags = ["-O3", "-lineinfo", "-std=c++17"]
    threads = os.environ.get("NVCC_THREADS", "").strip()
    if threads:
        if not threads.isdigit():
            fail(f"NVCC_THREADS must be a number, got {threads!r}")
        flags += ["--threads", threads]
    compress = os.environ.get("LOCALGRAD_FATBIN_COMPRESS", "1").strip()
    if compress not in ("0", "1"):
        fail(f"LOCALGRAD_FATBIN_COMPRESS must be 0 or 1, got {compress!r}")
    if compress == "1":
        flags += ["-Xfatbin", "-compress-all"]
    return flags


def record_build_config(with_cuda, cuda_home, arch_list):
    """What this build is made of, for _build_config.py and the version label."""
    import torch

    label = local_label(with_cuda)
    BUILD_CONFIG.update(
        version=base_version() + (f"+{label}" if label else ""),
        torch_version=torch.__version__,
        torch_cuda=torch.version.cuda,
        cuda_toolkit=nvcc_version(cuda_home) if with_cuda else None,
        cuda_arch_list=arch_list if with_cuda else "",
        cxx11_abi=bool(torch._C._GLIBCXX_USE_CXX11_ABI),
        backends=("cpu", "cuda") if with_cuda else ("cpu",),
        python=".".join(str(v) for v in sys.version_info[:2]),
    )


def write_build_config(path):
    lines = [
        "# Generated by localgrad's setup.py at build time (not in git): how the",
        "# compiled extension localgrad._C was built. Read by localgrad._extension.",
        *(f"{key} = {value!r}" for key, value in BUILD_CONFIG.items()),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def packages():
    """localgrad's packages, and benchmarks/ shipped as localgrad.benchmarks, so
    that an installed `localgrad bench` finds the benchmark scripts."""
    from setuptools import find_packages

    found = find_packages(include=["localgrad", "localgrad.*"])
    return {
        "packages": [*found, "localgrad.benchmarks"],
        "package_dir": {"localgrad.benchmarks": "benchmarks"},
        "exclude_package_data": {"localgrad.benchmarks": ["results/*", "*.sh"]},
    }


def extension():
    with_cuda, cuda_home = want_cuda()
    if with_cuda:
        # cpp_extension reads CUDA_HOME when it is first imported.
        os.environ["CUDA_HOME"] = cuda_home
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    sources = [str(p.relative_to(ROOT)) for p in sorted(CSRC.glob("*.cpp"))]
    sources += [str(p.relative_to(ROOT)) for p in sorted((CSRC / "cpu").glob("*.cpp"))]
    arch_list = resolved_arch_list() if with_cuda else ""
    record_build_config(with_cuda, cuda_home, arch_list)
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

    sources += [str(p.relative_to(ROOT)) for p in sorted((CSRC / "cuda").glob("*.cpp"))]
    sources += [str(p.relative_to(ROOT)) for p in sorted((CSRC / "cuda").glob("*.cu"))]
    macros += [("LOCALGRAD_WITH_CUDA", None), ("LOCALGRAD_CUDA_ARCH_LIST", f'"{arch_list}"')]
    print(f"localgrad build: CUDA backend on, toolkit {cuda_home}, arch list {arch_list}")
    return CUDAExtension(
        "localgrad._C",
        sources,
        define_macros=macros,
        extra_compile_args={"cxx": cxx, "nvcc": nvcc_flags()},
        extra_link_args=link,
    )


def default_max_jobs():
    """All cores, but no more jobs than free memory holds at ~2 GiB each (a
    translation unit with torch's headers takes 1-2 GiB)."""
    jobs = os.cpu_count() or 1
    try:
        with open("/proc/meminfo") as f:
            available_kib = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
        jobs = max(1, min(jobs, available_kib // (2 << 20)))
    except (OSError, StopIteration, ValueError):
        pass
    return jobs


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
    objects, stale = [], []
    for wrapper in wrappers:
        src = ROOT / wrapper
        obj = out_dir / (src.stem + ".o")
        if not obj.exists() or obj.stat().st_mtime < max(newest, src.stat().st_mtime):
            stale.append((src, obj))
        objects.append(str(obj))

    def compile_one(pair):
        src, obj = pair
        print(f"localgrad build: {src.name} with -fsanitize={sanitizer}", flush=True)
        subprocess.run([*cxx, *flags, "-c", str(src), "-o", str(obj)], check=True)

    # MAX_JOBS at a time, as ninja does for the rest of the build.
    jobs = max(1, int(os.environ.get("MAX_JOBS") or default_max_jobs()))
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(compile_one, stale))
    return objects


def build_ext_class():
    from torch.utils.cpp_extension import BuildExtension

    if "MAX_JOBS" not in os.environ:
        os.environ["MAX_JOBS"] = str(default_max_jobs())

    class BuildExtensionWithConfig(BuildExtension):
        """Also writes _build_config.py: into the build tree (what a wheel
        ships) and, for in-place and editable builds, next to the sources."""

        def run(self):
            super().run()
            if not BUILD_CONFIG:
                return
            write_build_config(Path(self.build_lib) / "localgrad" / "_build_config.py")
            if self.inplace or getattr(self, "editable_mode", False):
                write_build_config(ROOT / "localgrad" / "_build_config.py")

    return BuildExtensionWithConfig.with_options(use_ninja=shutil.which("ninja") is not None)


setup(
    ext_modules=[
        e
        for e in (None if emulation_mode() == "only" else extension(), emulated_extension())
        if e is not None
    ],
    cmdclass={"build_ext": build_ext_class()},
    version=version(),
    **packages(),
)
