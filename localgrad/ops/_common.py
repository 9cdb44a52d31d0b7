"""What every op wrapper shares: which compiled ops a call goes to (localgrad's,
or the emulated CUDA kernels inside `emulated()`), the fallback to the
reference without the extension, fake kernels for both namespaces, and the
stub that turns a CUDA call without the CUDA build into instructions."""

from __future__ import annotations

import contextlib
import contextvars
import warnings

import torch

from localgrad import _extension
from localgrad._extension import cuda_build_missing_error, has_cuda_kernels, has_extension

_emulating = contextvars.ContextVar("localgrad_emulating", default=False)
_fakes: dict[str, object] = {}


def compiled_ops():
    """The op namespace a wrapper calls: torch.ops.localgrad_emulated inside
    `emulated()`, else torch.ops.localgrad; None without the extension."""
    if _emulating.get():
        return torch.ops.localgrad_emulated
    return torch.ops.localgrad if has_extension() else None


@contextlib.contextmanager
def emulated(enabled: bool = True):
    """Within this block, localgrad's ops run the CUDA kernels on the host
    emulation of CUDA (localgrad._C_emulated) for CPU tensors; emulated(False)
    goes back to the CPU kernels. Needs the emulated build:
    `LOCALGRAD_CUDA_EMULATION=1 pip install --no-build-isolation -e .`"""
    if enabled:
        _extension.load_emulation()
        for op, fn in _fakes.items():
            _register_emulated_fake(op, fn)
    token = _emulating.set(enabled)
    try:
        yield
    finally:
        _emulating.reset(token)


_emulated_fakes_done: set[str] = set()


def _register_emulated_fake(op, fn):
    if op not in _emulated_fakes_done:
        torch.library.register_fake(f"localgrad_emulated::{op}")(fn)
        _emulated_fakes_done.add(op)


def register_fake(op: str):
    """register_fake for localgrad::op, and for localgrad_emulated::op once the
    emulated ops are loaded."""

    def wrap(fn):
        _fakes[op] = fn
        torch.library.register_fake(f"localgrad::{op}")(fn)
        if _extension.emulation_loaded():
            _register_emulated_fake(op, fn)
        return fn

    return wrap

_warned_fallback = False


def fall_back(op: str, tensor: torch.Tensor) -> None:
    """Called by an op wrapper without the compiled extension, before it runs
    the pure-PyTorch reference: a CUDA call gets instructions to rebuild, a
    CPU call a warning, once per process."""
    global _warned_fallback
    if tensor.is_cuda:
        raise cuda_build_missing_error(op)
    if not _warned_fallback:
        warnings.warn(
            f"localgrad.ops.{op}: the compiled extension is not loaded; running the "
            "pure-PyTorch reference (slow). Install with `pip install --no-build-isolation -e .`",
            RuntimeWarning,
            stacklevel=3,
        )
        _warned_fallback = True


def register_missing_cuda(*ops: str) -> None:
    """Without the CUDA backend, CUDA calls get instructions, not the
    dispatcher's 'could not run ... with arguments from the CUDA backend'."""
    if not has_extension() or has_cuda_kernels():
        return
    for op in ops:

        def refuse(*args, _op=op, **kwargs):
            raise cuda_build_missing_error(_op)

        torch.library.impl(f"localgrad::{op}", "CUDA", refuse)
