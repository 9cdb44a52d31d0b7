"""Loading the compiled ops (`localgrad._C`) and saying how they were built.

localgrad imports without its extension: the ops then run their pure-PyTorch
references on CPU tensors, and refuse CUDA tensors with instructions to rebuild.
"""

from __future__ import annotations

import torch

REBUILD_HINT = (
    "rebuild localgrad with its CUDA backend: on a machine with a CUDA build of torch "
    "and a CUDA toolkit, run `LOCALGRAD_CUDA=1 pip install --no-build-isolation -e .` "
    "in the localgrad checkout"
)

try:
    from localgrad import _C  # noqa: F401  (importing it registers torch.ops.localgrad)

    _compiled = dict(_C.compiled_info())
    _import_error = None
except ImportError as exc:  # not built, or built against another torch
    _C = None
    _compiled = None
    _import_error = exc


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
    info = {
        "extension": has_extension(),
        "extension_error": None if _import_error is None else str(_import_error),
        "cpu_kernels": has_extension(),
        "cuda_kernels": has_cuda_kernels(),
        "cuda_arch_list": (_compiled or {}).get("cuda_arch_list", ""),
        "openmp": (_compiled or {}).get("openmp", False),
        "built_with_torch": (_compiled or {}).get("torch_version"),
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
