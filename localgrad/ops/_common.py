"""What every op wrapper shares: which compiled ops a call goes to (localgrad's,
or the emulated CUDA kernels inside `emulated()`), the fallback to the
reference without the extension, fake kernels for both namespaces, and the
stub that turns a CUDA call without the CUDA build into instructions."""

from __future__ import annotations

import contextlib
import math
import sys
import warnings

import torch

from localgrad import _extension
from localgrad._extension import cuda_build_missing_error, has_cuda_kernels, has_extension

# A plain flag (torch.compile traces a global read, not a ContextVar).
_emulating = [False]
_fakes: dict[str, object] = {}


def compiled_ops():
    """The op namespace a wrapper calls: torch.ops.localgrad_emulated inside
    `emulated()`, else torch.ops.localgrad; None without the extension."""
    if _emulating[0]:
        return torch.ops.localgrad_emulated
    return torch.ops.localgrad if has_extension() else None


def run_op(op: str, tensor: torch.Tensor, reference_fn, args: tuple, compiled_only: tuple = ()):
    """The dispatch of a wrapper whose op returns its result: the compiled op
    (`compiled_only` appended: arguments the reference has no use for), or
    else fall_back and the pure-PyTorch reference on `args`."""
    if (lib := compiled_ops()) is not None:
        return getattr(lib, op)(*args, *compiled_only)
    fall_back(op, tensor)
    return reference_fn(*args)


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
    previous, _emulating[0] = _emulating[0], enabled
    try:
        yield
    finally:
        _emulating[0] = previous


_emulated_fakes_done: set[str] = set()


def _register_emulated_fake(op, fn):
    if op not in _emulated_fakes_done:
        torch.library.register_fake(f"localgrad_emulated::{op}")(fn)
        _emulated_fakes_done.add(op)


def _family_stacklevel() -> int:
    """torch.library.register_fake's _stacklevel, called from wrap() below,
    that points at the first frame outside this module: the family's ops
    module that asked for the registration."""
    level, frame = 2, sys._getframe(2)  # 0: here, 1: wrap, 2: wrap's caller
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        level += 1
        frame = frame.f_back
    return level


def register_fake(op: str):
    """register_fake for localgrad::op, and for localgrad_emulated::op once the
    emulated ops are loaded."""

    def wrap(fn):
        _fakes[op] = fn
        # The schema names the family's module (set_python_module): torch
        # checks the registering frame, which is the first one outside here.
        torch.library.register_fake(f"localgrad::{op}", fn, _stacklevel=_family_stacklevel())
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


# Fake kernels ----------------------------------------------------------------
# Every op's fake (meta) kernel runs the checks of the real glue that do not
# read tensor data, through one mechanism: `register_checked_fake(op, check,
# outputs)` registers a fake that first refuses tensors on different devices
# (a meta tensor among real ones would otherwise run the fake kernel and leave
# the real outputs untouched), then calls the op's `check(spec, *args)` with a
# Spec that checks ranks, shapes, dtypes and devices with messages naming the
# argument, then returns `outputs(*args)`.


class Spec:
    """Shape/dtype/device checks of one call, for fake kernels. Sizes are
    named symbols bound by their first use: spec.tensor(x, "x", ("B", "I"))
    then spec.tensor(h, "h", ("B", "H")) checks that h has x's batch."""

    def __init__(self, op: str):
        self.op = op
        self.size: dict[str, int] = {}

    def fail(self, message: str, kind=ValueError):
        raise kind(f"{self.op}: {message}")

    def tensor(self, t, name: str, shape=None, *, dtype=None, floating=None, like=None, dense_rows=False):
        """t: a tensor named `name`. shape: a tuple of ints and symbols (or
        None: any); dtype: a dtype or a tuple of dtypes; floating: the
        floating dtypes allowed; like: (tensor, name) whose dtype t must have."""
        if not isinstance(t, torch.Tensor):
            self.fail(f"{name} must be a tensor, got {type(t).__name__}", TypeError)
        if floating is not None and t.dtype not in floating:
            names = ", ".join(str(d).replace("torch.", "") for d in floating)
            self.fail(f"{name} must be {names}, got {t.dtype}", TypeError)
        if dtype is not None and t.dtype not in (dtype if isinstance(dtype, tuple) else (dtype,)):
            self.fail(f"{name} must be {dtype}, got {t.dtype}", TypeError)
        if like is not None and t.dtype != like[0].dtype:
            self.fail(f"{name} must have the dtype of {like[1]} ({like[0].dtype}), got {t.dtype}", TypeError)
        if shape is not None:
            if t.dim() != len(shape):
                self.fail(f"{name} must be {len(shape)}-D, got shape {tuple(t.shape)}")
            want = []
            for size, symbol in zip(t.shape, shape):
                if symbol is None:
                    want.append(int(size))
                elif isinstance(symbol, str):
                    self.size.setdefault(symbol, int(size))
                    want.append(self.size[symbol])
                else:
                    want.append(int(symbol))
            if tuple(int(s) for s in t.shape) != tuple(want):
                self.fail(f"{name} must have shape {tuple(want)}, got {tuple(t.shape)}")
        if dense_rows and t.dim() == 2 and t.shape[1] > 1 and t.stride(1) != 1:
            self.fail(f"{name} must have unit stride along its last dimension, got strides {t.stride()}")
        return t

    def contiguous(self, t, name: str):
        if not t.is_contiguous():
            self.fail(f"{name} must be contiguous (it is written in place), got strides {t.stride()}")


def _named_tensors(schema, args, kwargs):
    """(name, tensor) of every tensor argument, list items as name[i]."""
    values = list(args) + [kwargs[a.name] for a in schema.arguments[len(args):] if a.name in kwargs]
    for argument, value in zip(schema.arguments, values):
        if isinstance(value, torch.Tensor):
            yield argument.name, value
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if isinstance(item, torch.Tensor):
                    yield f"{argument.name}[{i}]", item


def check_devices(op: str, named) -> None:
    """All tensors of a call on one device (the real glue checks the same)."""
    first = None
    for name, t in named:
        if first is None:
            first = (name, t.device)
        elif t.device != first[1]:
            hint = ""
            if "meta" in (t.device.type, first[1].type):
                hint = " (a meta tensor among real ones would run no kernel: use meta tensors for all arguments or none)"
            raise RuntimeError(f"{op}: {name} is on {t.device} but {first[0]} is on {first[1]}{hint}")


def register_checked_fake(op: str, check, outputs):
    """Registers the fake kernel of localgrad::op: devices, then
    check(Spec(op), *args), then outputs(*args)."""
    schema = getattr(torch.ops.localgrad, op).default._schema

    def fake(*args, **kwargs):
        check_devices(op, _named_tensors(schema, args, kwargs))
        check(Spec(op), *args, **kwargs)
        return outputs(*args, **kwargs)

    fake.__name__ = f"_{op}_fake"
    return register_fake(op)(fake)


FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
REALS = (torch.float32, torch.float64)


def _check_step(spec, h_prev, x, dphi, hh_mask, weight_hh=None):
    """The per-step checks every online op shares (csrc/online_rnn_glue.cpp)."""
    spec.tensor(h_prev, "h_prev", ("B", "H"), floating=REALS)
    spec.tensor(x, "x", ("B", "I"), like=(h_prev, "h_prev"))
    spec.tensor(dphi, "dphi", ("B", "H"), like=(h_prev, "h_prev"))
    if hh_mask is not None:
        spec.tensor(hh_mask, "hh_mask", ("H", "H"), like=(h_prev, "h_prev"))
    if weight_hh is not None:
        spec.tensor(weight_hh, "weight_hh", ("H", "H"), like=(h_prev, "h_prev"))


def _check_alpha(spec, alpha):
    if not math.isfinite(alpha):
        spec.fail(f"alpha must be finite, got {alpha}")
