"""hebbian_update: one whole Hebbian step of one layer in one call (schema:
csrc/registration.cpp; maths: localgrad/reference/hebbian.py), its fake
kernel, and the reference fallback without the extension."""

from __future__ import annotations

import math

import torch

from localgrad._extension import has_extension
from localgrad.ops._common import compiled_ops, fall_back, register_fake, register_missing_cuda
from localgrad._checks import as_bool, as_float, as_int
from localgrad.reference import hebbian as _ref

_OP = "hebbian_update"
_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _check(x, weight, theta, rule, temperature, p, rank, anti, lr, lr_power, u, grad) -> None:
    """What the compiled glue (csrc/hebbian_glue.cpp) checks, for the fake
    kernel and the fallback, with the same messages."""
    if x.dim() != 2:
        raise ValueError(f"{_OP}: x must be 2-D (batch, n_in), got shape {tuple(x.shape)}")
    if x.dtype not in _FLOATS:
        raise TypeError(f"{_OP}: x must be float32, float64, float16 or bfloat16, got {x.dtype}")
    if weight.dim() != 2:
        raise ValueError(f"{_OP}: weight must be 2-D (n_out, n_in), got shape {tuple(weight.shape)}")
    for name, t in (("weight", weight), ("u", u), ("grad", grad)) + ((("theta", theta),) if theta is not None else ()):
        if t.dtype != x.dtype:
            raise TypeError(f"{_OP}: {name} must have the dtype of x ({x.dtype}), got {t.dtype}")
        if t.device != x.device:
            raise RuntimeError(f"{_OP}: {name} must be on the device of x ({x.device}), got {t.device}")
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"{_OP}: weight must have {x.shape[1]} columns (n_in, the columns of x), got {weight.shape[1]}")
    if not 0 <= rule < len(_ref.RULE_NAMES):
        raise ValueError(f"{_OP}: rule = {rule} is not a rule code (0 oja, 1 sanger, 2 bcm, 3 softhebb, 4 krotov)")
    for name, v in (("temperature", temperature), ("p", p), ("anti", anti), ("lr", lr), ("lr_power", lr_power)):
        if not math.isfinite(v):
            raise ValueError(f"{_OP}: {name} must be finite, got {v}")
    if temperature <= 0:
        raise ValueError(f"{_OP}: temperature must be > 0, got {temperature}")
    if p < 1:
        raise ValueError(f"{_OP}: p must be >= 1, got {p}")
    if rank < 1:
        raise ValueError(f"{_OP}: rank must be >= 1, got {rank}")
    if lr_power < 0:
        raise ValueError(f"{_OP}: lr_power must be >= 0, got {lr_power}")
    n_out = weight.shape[0]
    if rule == _ref.RULE_CODES["bcm"]:
        if theta is None:
            raise ValueError(f"{_OP}: rule bcm needs theta (n_out,), got None")
        if theta.dim() != 1 or theta.shape[0] != n_out:
            raise ValueError(f"{_OP}: theta must have {n_out} entries (n_out, the rows of weight), got shape {tuple(theta.shape)}")
    if u.dim() != 2 or tuple(u.shape) != (x.shape[0], n_out):
        raise ValueError(f"{_OP}: u must have shape ({x.shape[0]}, {n_out}) (batch, n_out), got {tuple(u.shape)}")
    if tuple(grad.shape) != tuple(weight.shape):
        raise ValueError(f"{_OP}: grad must have the shape of weight {tuple(weight.shape)}, got {tuple(grad.shape)}")


def hebbian_update(x: torch.Tensor, weight: torch.Tensor, rule: str | int, theta: torch.Tensor | None = None,
                   temperature: float = 1.0, p: float = 3.0, rank: int = 2, anti: float = 0.4, lr: float = 1.0,
                   lr_power: float = 0.0, normalize: bool = False, u: torch.Tensor | None = None,
                   grad: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of a Hebbian rule on one layer, fused:

        u = x W^T (Krotov: the p-currents), y = f_rule(u),
        grad = -rate_k dW_k / (max |dW| if normalize)

    x: (batch, n_in); weight: (n_out, n_in); rule: "oja", "sanger", "bcm"
    (with theta (n_out,)), "softhebb" (temperature), "krotov" (p, rank,
    anti); rate_k = lr (| |w_k|_p - 1 | + 1e-10)^lr_power. u (batch, n_out)
    and grad (weight's shape) are written when given, allocated otherwise.
    Returns (u, grad). An optimizer stepping with grad in weight.grad
    applies the rule (SGD with lr 1: W += rate dW).
    """
    # A code given as a number goes through as_int: True would otherwise be
    # rule 1 (sanger) and 1.0 a confusing "not one of the rule names".
    code = _ref.rule_code(rule if isinstance(rule, str) else as_int(rule, _OP, "rule"))
    args = (as_float(temperature, _OP, "temperature"), as_float(p, _OP, "p"), as_int(rank, _OP, "rank"),
            as_float(anti, _OP, "anti"), as_float(lr, _OP, "lr"), as_float(lr_power, _OP, "lr_power"),
            as_bool(normalize, _OP, "normalize"))
    # The glue does not refuse outputs that require grad, and an in-place
    # write into one bypasses autograd without a word.
    for name, t in (("u", u), ("grad", grad)):
        if isinstance(t, torch.Tensor) and t.requires_grad:
            raise ValueError(f"{_OP}: {name} requires grad, but localgrad's ops write it in place outside autograd; "
                             f"pass {name}.detach() (or a buffer that does not require grad)")
    if u is None:
        u = x.new_empty((x.shape[0], weight.shape[0])) if x.dim() == 2 and weight.dim() == 2 else x.new_empty(0)
    if grad is None:
        grad = torch.empty_like(weight)
    if (lib := compiled_ops()) is not None:
        lib.hebbian_update(x, weight, theta, code, *args, u, grad)
        return u, grad
    fall_back(_OP, x)
    _check(x, weight, theta, code, *args[:6], u, grad)
    ru, rg = _ref.hebbian_update(x, weight, code, theta, *args)
    u.copy_(ru)
    grad.copy_(rg)
    return u, grad


if has_extension():

    @register_fake("hebbian_update")
    def _hebbian_update_fake(x, weight, theta, rule, temperature, p, rank, anti, lr, lr_power, normalize, u, grad):
        # Writes into u and grad only; checks what the kernel checks, so a
        # traced call fails where the real one would.
        _check(x, weight, theta, rule, temperature, p, rank, anti, lr, lr_power, u, grad)
        return None

    register_missing_cuda(_OP)
