"""Loading the compiled ops (`localgrad._C`) and saying how they were built.

localgrad imports without its extension: the ops then run their pure-PyTorch
references on CPU tensors, and refuse CUDA tensors with instructions to rebuild.
A build also writes `localgrad/_build_config.py` (setup.py): the torch, CUDA,
arch list and C++ ABI it was made for, so that an extension that fails to load
(a wheel built for another torch gives "undefined symbol") is explained.
"""

from __future__ import annotations

import warnings

import torch

REBUILD_HINT = (
    "rebuild localgrad with its CUDA backend: on a machine with a CUDA build of torch "
    "and a CUDA toolkit, run `LOCALGRAD_CUDA=1 pip install --no-build-isolation -e .` "
    "in the localgrad checkout"
)

REINSTALL_HINT = (
    "rebuild localgrad against this torch: in a checkout, `pip install --no-build-isolation -e .`; "
    "from the sdist, `pip install --no-build-isolation --no-deps --force-reinstall localgrad-<version>.tar.gz`"
)

try:
    from localgrad import _build_config
except ImportError:  # never built: a bare checkout
    _build_config = None


def build_config() -> dict | None:
    """What setup.py recorded about the build (version, torch_version,
    torch_cuda, cuda_toolkit, cuda_arch_list, cxx11_abi, backends, python), or
    None where localgrad was never built."""
    if _build_config is None:
        return None
    return {k: v for k, v in vars(_build_config).items() if not k.startswith("_")}


def load_error_message(exc: BaseException, config: dict | None = None) -> str:
    """Why `localgrad._C` did not load, with the build it was made for next to
    the torch that tried to load it, and how to rebuild."""
    config = build_config() if config is None else config
    if not config:
        return f"{exc}; the compiled extension is not built: `pip install --no-build-isolation -e .` in the checkout"
    built_cuda = config.get("torch_cuda") or "none"
    here_cuda = torch.version.cuda or "none"
    message = (
        f"localgrad._C failed to load ({exc}): built for torch {config.get('torch_version')} / CUDA {built_cuda}, "
        f"this is torch {torch.__version__} / CUDA {here_cuda}"
    )
    here_abi = bool(torch._C._GLIBCXX_USE_CXX11_ABI)
    if config.get("cxx11_abi") is not None and bool(config["cxx11_abi"]) != here_abi:
        message += f" (C++11 ABI {'on' if config['cxx11_abi'] else 'off'} in the build, {'on' if here_abi else 'off'} here)"
    return f"{message}; {REINSTALL_HINT}; or install torch {config.get('torch_version')}, which it was built for"


try:
    from localgrad import _C  # noqa: F401  (importing it registers torch.ops.localgrad)

    _compiled = dict(_C.compiled_info())
    _import_error = None
except ImportError as exc:  # not built, or built against another torch
    _C = None
    _compiled = None
    _import_error = load_error_message(exc)
    if _build_config is not None:
        # Built, yet not loadable: a silent fall-back to the slow references
        # would hide it.
        warnings.warn(_import_error, RuntimeWarning, stacklevel=2)


_emulated = None


def has_emulation() -> bool:
    """True when localgrad._C_emulated (the CUDA kernels on the host emulation
    of CUDA, LOCALGRAD_CUDA_EMULATION=1 at install) was built. It is loaded on
    first use (localgrad.ops.emulated), not at import: a sanitizer build of it
    needs its runtime preloaded."""
    import importlib.util

    return importlib.util.find_spec("localgrad._C_emulated") is not None


def emulation_loaded() -> bool:
    return _emulated is not None


def load_emulation():
    """Imports localgrad._C_emulated (registering torch.ops.localgrad_emulated)
    and returns it."""
    global _emulated
    if _emulated is None:
        if not has_emulation():
            raise RuntimeError(
                "localgrad: the emulated CUDA backend was not built; install with "
                "`LOCALGRAD_CUDA_EMULATION=1 pip install --no-build-isolation -e .`"
            )
        from localgrad import _C_emulated

        _emulated = _C_emulated
    return _emulated


def has_extension() -> bool:
    """True when the compiled ops are loaded."""
    return _C is not None


def has_cuda_kernels() -> bool:
    """True when the compiled ops include the CUDA backend."""
    return bool(_compiled and _compiled["cuda"])


def build_info() -> dict:
    """How localgrad was built and what it runs on: versions, compiled backends
    and the CUDA architectures compiled for."""
    config = build_config() or {}
    info = {
        "version": config.get("version") or (_compiled or {}).get("version"),
        "extension": has_extension(),
        "extension_error": _import_error,
        "cpu_kernels": has_extension(),
        "cuda_kernels": has_cuda_kernels(),
        # As built, "+PTX" included; the compiled module's own copy where no
        # _build_config.py was written (a build by other means).
        "cuda_arch_list": config.get("cuda_arch_list", (_compiled or {}).get("cuda_arch_list", "")),
        "openmp": (_compiled or {}).get("openmp", False),
        "built_with_torch": (_compiled or {}).get("torch_version"),
        "built_with_cuda": config.get("torch_cuda") if "cuda" in config.get("backends", ()) else None,
        "cxx11_abi": config.get("cxx11_abi"),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cuda_emulation": has_emulation(),
        "num_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name()
    return info


def cuda_build_missing_error(op: str) -> RuntimeError:
    why = (
        "the compiled extension is missing" if not has_extension() else "it was built without CUDA"
    )
    return RuntimeError(f"localgrad.{op}: got CUDA tensors, but {why}; {REBUILD_HINT}")
