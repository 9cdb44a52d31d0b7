"""Activation codes shared with the kernels (csrc/activation.h).

Local rules inject an error after a layer's nonlinearity and need f'(a) where
only h = f(a) is at hand; every activation listed here has a derivative that
is a function of its output.
"""

from __future__ import annotations

import enum

import torch
from torch import nn


class Activation(enum.IntEnum):
    """Mirrors localgrad::Activation; the values are part of the op schemas."""

    DERIVATIVE = 0  # the tensor given already holds f'(a)
    IDENTITY = 1
    RELU = 2
    LEAKY_RELU = 3
    TANH = 4
    SIGMOID = 5


_MODULE_KINDS = {
    nn.Identity: Activation.IDENTITY,
    nn.ReLU: Activation.RELU,
    nn.LeakyReLU: Activation.LEAKY_RELU,
    nn.Tanh: Activation.TANH,
    nn.Sigmoid: Activation.SIGMOID,
}


def from_module(module: nn.Module) -> tuple[Activation, float] | None:
    """(kind, LeakyReLU slope) of an activation module, or None if it is not one
    whose derivative follows from its output."""
    kind = _MODULE_KINDS.get(type(module))
    if kind is None:
        return None
    slope = float(module.negative_slope) if kind is Activation.LEAKY_RELU else 0.0
    return kind, slope


def derivative_from_output(h: torch.Tensor, kind: Activation, slope: float = 0.0) -> torch.Tensor:
    """f'(a) from h = f(a), the way the kernels compute it (ReLU's kink at 0
    takes derivative 0, as PyTorch's own backward does)."""
    kind = Activation(kind)
    if kind is Activation.DERIVATIVE:
        return h
    if kind is Activation.IDENTITY:
        return torch.ones_like(h)
    if kind is Activation.RELU:
        return (h > 0).to(h.dtype)
    if kind is Activation.LEAKY_RELU:
        return torch.where(h > 0, torch.ones_like(h), torch.full_like(h, slope))
    if kind is Activation.TANH:
        return 1 - h * h
    return h * (1 - h)


def apply(a: torch.Tensor, kind: Activation, slope: float = 0.0) -> torch.Tensor:
    """f(a) for a layer activation code (IDENTITY .. SIGMOID)."""
    kind = Activation(kind)
    if kind is Activation.IDENTITY:
        return a
    if kind is Activation.RELU:
        return a.clamp_min(0)
    if kind is Activation.LEAKY_RELU:
        return torch.where(a > 0, a, a * slope)
    if kind is Activation.TANH:
        return torch.tanh(a)
    if kind is Activation.SIGMOID:
        return torch.sigmoid(a)
    raise ValueError(f"activation code {int(kind)} is not a layer activation")


def derivative_at(a: torch.Tensor, kind: Activation, slope: float = 0.0) -> torch.Tensor:
    """f'(a) at the input a of the activation (ReLU's kink at 0 has derivative
    0, as autograd's)."""
    kind = Activation(kind)
    if kind is Activation.IDENTITY:
        return torch.ones_like(a)
    if kind is Activation.RELU:
        return (a > 0).to(a.dtype)
    if kind is Activation.LEAKY_RELU:
        return torch.where(a > 0, torch.ones_like(a), torch.full_like(a, slope))
    if kind is Activation.TANH:
        return 1 - torch.tanh(a) ** 2
    if kind is Activation.SIGMOID:
        s = torch.sigmoid(a)
        return s * (1 - s)
    raise ValueError(f"activation code {int(kind)} is not a layer activation")
