"""What every op wrapper shares: the fallback to the reference without the
extension, and the stub that turns a CUDA call without the CUDA build into
instructions."""

from __future__ import annotations

import warnings

import torch

from localgrad._extension import cuda_build_missing_error, has_cuda_kernels, has_extension

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
