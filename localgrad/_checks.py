"""The package's argument validators: every public constructor, learner and
op wrapper takes its scalar arguments through these, and the errors name the
argument. (Tensor checks live in the C++ glue and, for the fake kernels, in
localgrad.ops._common.Spec.)"""

from __future__ import annotations

import math
import numbers
import operator

import numpy as np
import torch

# The wrappers (and the public classes, through the same helpers) take Python
# numbers and refuse what would be coerced silently: 2.7 for an int (int()
# would give 2), '3' for a seed, NaN or inf where the maths has no meaning.

_INT64 = (-(2**63), 2**63 - 1)


def as_int(value, op: str, name: str, *, minimum: int | None = None) -> int:
    """An integer argument: int, NumPy integer or integral 0-d tensor; never a
    bool, a float (even 2.0) or a string."""
    if isinstance(value, bool) or isinstance(value, (str, bytes, float)):
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__} {value!r}")
    if isinstance(value, torch.Tensor) and (value.numel() != 1 or value.is_floating_point() or value.dtype == torch.bool):
        raise TypeError(f"{op}: {name} must be an int, got a tensor of shape {tuple(value.shape)} and dtype {value.dtype}")
    try:
        result = operator.index(value)
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__} {value!r}") from None
    if not _INT64[0] <= result <= _INT64[1]:
        raise ValueError(f"{op}: {name} = {result} does not fit in int64")
    if minimum is not None and result < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {result}")
    return result


def as_float(
    value, op: str, name: str, *, finite: bool = True, positive: bool = False, nonnegative: bool = False
) -> float:
    """A real argument: int, float, NumPy real or 0-d real tensor; never a bool
    or a string. finite: NaN and +-inf refused; positive / nonnegative: > 0 / >= 0."""
    if isinstance(value, (bool, str, bytes)) or (
        isinstance(value, torch.Tensor) and (value.numel() != 1 or value.dtype == torch.bool or value.is_complex())
    ):
        raise TypeError(f"{op}: {name} must be a real number, got {type(value).__name__} {value!r}")
    if not isinstance(value, (numbers.Real, torch.Tensor)):
        raise TypeError(f"{op}: {name} must be a real number, got {type(value).__name__} {value!r}")
    result = float(value)
    if math.isnan(result):
        raise ValueError(f"{op}: {name} must not be NaN")
    if finite and math.isinf(result):
        raise ValueError(f"{op}: {name} must be finite, got {result}")
    if positive and not result > 0:
        raise ValueError(f"{op}: {name} must be positive, got {result}")
    if nonnegative and not result >= 0:
        raise ValueError(f"{op}: {name} must be >= 0, got {result}")
    return result


def as_bool(value, op: str, name: str) -> bool:
    """A flag: bool or NumPy bool (an int other than 0/1, or a string, is refused)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{op}: {name} must be a bool, got {type(value).__name__} {value!r}")
