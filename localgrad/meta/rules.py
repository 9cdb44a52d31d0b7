"""Parameterised local rules as modules holding their meta-parameters:
rule(x, y, weight) is the update dW, differentiable in the parameters.
Maths and papers: localgrad/reference/meta.py."""

from __future__ import annotations

import torch
from torch import nn

from localgrad._checks import as_float
from localgrad.reference import meta as reference


def _check_activity(name: str, x, y, weight) -> None:
    for label, t in (("x", x), ("y", y), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: {label} must be a tensor, got {type(t).__name__}")
        if t.dim() < 2:
            raise ValueError(f"{name}: {label} must be at least 2-D, got shape {tuple(t.shape)}")
    if x.shape[-1] != weight.shape[-1]:
        raise ValueError(f"{name}: x must have {weight.shape[-1]} features (weight's n_in), got shape {tuple(x.shape)}")
    if y.shape[-1] != weight.shape[-2]:
        raise ValueError(f"{name}: y must have {weight.shape[-2]} units (weight's n_out), got shape {tuple(y.shape)}")
    if y.shape[-2] != x.shape[-2]:
        raise ValueError(f"{name}: y must have x's batch {x.shape[-2]}, got shape {tuple(y.shape)}")


class PolynomialRule(nn.Module):
    """dW = lr sum_abc theta_abc <x^a y^b> W^c, a, b, c in {0, 1, 2}
    (Confavreux et al. 2020). theta (3, 3, 3) is the meta-parameter; lr is
    fixed (it and theta's scale are one degree of freedom). init: None
    (zeros), "oja", a (3, 3, 3) tensor, or init_std for small random values."""

    def __init__(self, lr: float = 1.0, init=None, init_std: float = 0.0, generator: torch.Generator | None = None,
                 dtype=torch.float32):
        super().__init__()
        self.lr = as_float(lr, "PolynomialRule", "lr")
        init_std = as_float(init_std, "PolynomialRule", "init_std", nonnegative=True)
        if init is None:
            theta = reference.polynomial_theta(dtype=dtype)
        elif isinstance(init, str):
            if init != "oja":
                raise ValueError(f"PolynomialRule: init must be None, 'oja' or a (3, 3, 3) tensor, got {init!r}")
            theta = reference.polynomial_theta(reference.OJA_THETA, dtype=dtype)
        elif isinstance(init, torch.Tensor) and init.shape == (3, 3, 3) and init.is_floating_point():
            theta = init.detach().clone()
        else:
            raise ValueError(f"PolynomialRule: init must be None, 'oja' or a (3, 3, 3) float tensor, got {init!r}")
        if init_std:
            noise = torch.randn(theta.shape, generator=generator, dtype=torch.float64)
            theta = theta + init_std * noise.to(theta.dtype)
        self.theta = nn.Parameter(theta)

    def forward(self, x, y, weight, theta: torch.Tensor | None = None) -> torch.Tensor:
        """theta: None (the module's), or a stand-in with leading dimensions
        (e.g. an ES population, (P, 1, 3, 3, 3) against W (P, E, n_out, n_in))."""
        _check_activity("PolynomialRule", x, y, weight)
        return reference.polynomial_update(x, y, weight, self.theta if theta is None else theta, self.lr)

    def terms(self) -> dict[str, float]:
        """{'x^a y^b w^c': theta_abc}, for tables."""
        theta = self.theta.detach()
        return {term_name(a, b, c): float(theta[a, b, c]) for a in range(3) for b in range(3) for c in range(3)}

    def extra_repr(self) -> str:
        return f"lr={self.lr}"


def term_name(a: int, b: int, c: int) -> str:
    """'1' for a = b = c = 0, else e.g. 'x y', 'y^2 w'."""
    parts = [f"{v}" if e == 1 else f"{v}^{e}" for v, e in (("x", a), ("y", b), ("w", c)) if e]
    return " ".join(parts) or "1"


class ABCDRule(nn.Module):
    """dW_ki = eta (A <y_k x_i> + B <x_i> + C <y_k> + D) (Najarro & Risi
    2020). shape: () for coefficients shared by every synapse, (n_out, n_in)
    per synapse, or any shape broadcasting against W (e.g. (1, n_in)).
    A, B, C, D and eta (learn_lr) are meta-parameters."""

    def __init__(self, shape=(), lr: float = 0.1, A: float = 0.0, B: float = 0.0, C: float = 0.0, D: float = 0.0,
                 learn_lr: bool = True, init_std: float = 0.0, generator: torch.Generator | None = None,
                 dtype=torch.float32):
        super().__init__()
        if isinstance(shape, int) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape):
            raise ValueError(f"ABCDRule: shape must be a tuple of positive ints, got {shape!r}")
        shape = tuple(shape)
        init_std = as_float(init_std, "ABCDRule", "init_std", nonnegative=True)
        for name, value in (("A", A), ("B", B), ("C", C), ("D", D)):
            value = as_float(value, "ABCDRule", name)
            init = torch.full(shape, value, dtype=dtype)
            if init_std:
                init = init + init_std * torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)
            setattr(self, name, nn.Parameter(init))
        lr = torch.full(shape, as_float(lr, "ABCDRule", "lr"), dtype=dtype)
        if learn_lr:
            self.lr = nn.Parameter(lr)
        else:
            self.register_buffer("lr", lr)

    def forward(self, x, y, weight) -> torch.Tensor:
        _check_activity("ABCDRule", x, y, weight)
        return reference.abcd_update(x, y, self.A, self.B, self.C, self.D, self.lr)
