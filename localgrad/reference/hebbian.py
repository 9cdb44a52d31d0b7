"""Hebbian learning without feedback, reference implementation.

Every rule here is local: the update of weight W[k, i] (unit k, input i) sees
only the input x_i, the unit's own pre-activation u_k = <w_k, x> and output
y_k, and w_k. Shapes: x (batch, n_in), weight W (n_out, n_in), u and y
(batch, n_out). Updates are batch means (a batch of one is the online rule):

  Oja (1982), "Simplified neuron model as a principal component analyzer",
  J. Math. Biol. 15, eq. (3), one row per unit:
      y = u = W x,    dw_k = y_k (x - y_k w_k)
  Fixed point: w_k = +-v_1, the top eigenvector of C = E[x x^T], with
  |w_k| = 1 (the mean field is C w - (w^T C w) w).

  Sanger (1989), "Optimal unsupervised learning in a single-layer linear
  feedforward neural network", Neural Networks 2, eq. (2) (GHA):
      y = W x,    dW = y x^T - LT[y y^T] W
  (LT: lower triangle, diagonal included). Row k converges to +-v_k, the
  eigenvectors of C in decreasing order of eigenvalue.

  BCM (Bienenstock, Cooper & Munro 1982; in the objective form of Intrator &
  Cooper 1992, Neural Networks 5, eq. (3)):
      y = W x,    dw_k = x phi(y_k, theta_k),   phi(y, theta) = y (y - theta)
  with the sliding threshold theta_k a running mean of y_k^2 (kept by the
  layer, not the update). Fixed points are selective: a unit responds to one
  pattern of a set and not the others.

  Krotov & Hopfield (2019), "Unsupervised learning by competing hidden
  units", PNAS 116, eqs. (2)-(4) and their rank-based activation:
      u_k = <w_k, x>_p = sum_i sign(W_ki) |W_ki|^(p-1) x_i   (the currents)
      g_k = 1 for the unit with the largest current, -delta for the unit
            ranked `rank` (2nd by default), 0 for the rest
      dw_k = g_k (x - u_k w_k)
  The weights go to the unit p-sphere, sum_i |W_ki|^p = 1
  (d/dt |w_k|_p^p = p g_k u_k (1 - |w_k|_p^p)). Their training code divides
  dW by max |dW| before the step, which `normalize` does.

  SoftHebb (Moraitis et al. 2022, "SoftHebb: Bayesian inference in
  unsupervised Hebbian soft winner-take-all networks", Neuromorph. Comput.
  Eng. 2, eq. (6); with the anti-Hebbian sign flip, max-abs normalisation and
  per-unit adaptive rate of Journe et al., "Hebbian deep learning without
  feedback", ICLR 2023, Sec. 3 and App. A):
      u = W x,   y = softmax(u / temperature) over the units,
      y_k -> -y_k for every unit but the winner argmax_k u_k,
      dw_k = y_k (x - u_k w_k)
  The weights go to the unit sphere, |w_k| = 1.

The step: grad = -rate_k dW_k / (max |dW| if normalize else 1), with the
per-unit rate of Journe et al. rate_k = lr (| |w_k| - 1 | + 1e-10)^lr_power
(|w_k| the p-norm for Krotov, 2-norm otherwise; lr_power 0 is the constant
rate lr). An optimizer's step with `grad` in `.grad` (plain SGD, lr 1)
applies W += rate dW.
"""

from __future__ import annotations

import torch

RULE_NAMES = ("oja", "sanger", "bcm", "softhebb", "krotov")
RULE_CODES = {name: i for i, name in enumerate(RULE_NAMES)}
ADAPTIVE_EPS = 1e-10


def rule_code(rule: str | int) -> int:
    if isinstance(rule, int):
        if not 0 <= rule < len(RULE_NAMES):
            raise ValueError(f"hebbian: rule code must be 0..{len(RULE_NAMES) - 1}, got {rule}")
        return rule
    if rule not in RULE_CODES:
        raise ValueError(f"hebbian: rule must be one of {', '.join(RULE_NAMES)}, got {rule!r}")
    return RULE_CODES[rule]


def _mean_scale(x: torch.Tensor) -> float:
    # The mean over an empty batch is taken as no update at all.
    return 1.0 / max(x.shape[0], 1)


def oja(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Oja's rule, every row on its own: dW (n_out, n_in) = mean_b y (x - y w)."""
    y = x @ weight.T
    return (y.T @ x - (y * y).sum(0)[:, None] * weight) * _mean_scale(x)


def oja_mean_field(cov: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """E[dw] of Oja's rule for inputs of second moment `cov`: C w - (w^T C w) w."""
    cw = cov @ w
    return cw - (w @ cw) * w


def sanger(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Sanger's GHA: dW = mean_b (y x^T - LT[y y^T] W)."""
    y = x @ weight.T
    return (y.T @ x - torch.tril(y.T @ y) @ weight) * _mean_scale(x)


def bcm(x: torch.Tensor, weight: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """BCM: dW = mean_b phi(y, theta) x^T with phi = y (y - theta); theta (n_out,)."""
    y = x @ weight.T
    phi = y * (y - theta)
    return (phi.T @ x) * _mean_scale(x)


def krotov_currents(x: torch.Tensor, weight: torch.Tensor, p: float) -> torch.Tensor:
    """u (batch, n_out) = <w_k, x>_p = sum_i sign(W_ki) |W_ki|^(p-1) x_i."""
    return x @ (torch.sign(weight) * weight.abs().pow(p - 1)).T


def krotov_activation(u: torch.Tensor, rank: int, anti: float) -> torch.Tensor:
    """g (batch, n_out): 1 for the largest current, -anti for the `rank`-th
    (1-based), 0 elsewhere; ties go to the lower unit index."""
    g = torch.zeros_like(u)
    if u.shape[0] == 0 or u.shape[1] == 0:
        return g
    order = torch.sort(u, dim=1, descending=True, stable=True).indices
    rows = torch.arange(u.shape[0], device=u.device)
    if 1 <= rank <= u.shape[1] and rank != 1:
        g[rows, order[:, rank - 1]] = -anti
    g[rows, order[:, 0]] = 1.0
    return g


def krotov(x: torch.Tensor, weight: torch.Tensor, p: float = 3.0, rank: int = 2, anti: float = 0.4) -> torch.Tensor:
    """Krotov-Hopfield: dW = mean_b g (x - u w) with g the rank-based activation."""
    u = krotov_currents(x, weight, p)
    g = krotov_activation(u, rank, anti)
    return (g.T @ x - (g * u).sum(0)[:, None] * weight) * _mean_scale(x)


def softhebb_activation(u: torch.Tensor, temperature: float) -> torch.Tensor:
    """y = softmax(u / temperature) over the units, negated for every unit but
    the winner argmax u (the first one on ties)."""
    y = torch.softmax(u / temperature, dim=1)
    if u.shape[0] == 0 or u.shape[1] == 0:
        return y
    sign = -torch.ones_like(y)
    sign.scatter_(1, u.argmax(dim=1, keepdim=True), 1.0)
    return y * sign


def softhebb(x: torch.Tensor, weight: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """SoftHebb: dW = mean_b y (x - u w), y the soft WTA with anti-Hebbian losers."""
    u = x @ weight.T
    y = softhebb_activation(u, temperature)
    return (y.T @ x - (y * u).sum(0)[:, None] * weight) * _mean_scale(x)


def radius(weight: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """|w_k|_p per unit, (n_out,)."""
    return weight.abs().pow(p).sum(1).pow(1.0 / p)


def adaptive_rate(weight: torch.Tensor, lr: float, lr_power: float, p: float = 2.0) -> torch.Tensor:
    """rate_k = lr (| |w_k|_p - 1 | + 1e-10)^lr_power, (n_out,); lr for lr_power 0."""
    return lr * ((radius(weight, p) - 1).abs() + ADAPTIVE_EPS).pow(lr_power)


def hebbian_update(
    x: torch.Tensor,
    weight: torch.Tensor,
    rule: str | int,
    theta: torch.Tensor | None = None,
    temperature: float = 1.0,
    p: float = 3.0,
    rank: int = 2,
    anti: float = 0.4,
    lr: float = 1.0,
    lr_power: float = 0.0,
    normalize: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of `rule`, as the fused op computes it. Returns (u, grad):
    u (batch, n_out) the pre-activations (Krotov's currents for krotov) that
    the next layer is fed from, and grad (n_out, n_in) = -rate dW / norm, in
    the dtype of x; computed in float64."""
    code = rule_code(rule)
    xd, wd = x.double(), weight.double()
    if code == RULE_CODES["krotov"]:
        u = krotov_currents(xd, wd, p)
        delta = krotov(xd, wd, p, rank, anti)
    else:
        u = xd @ wd.T
        if code == RULE_CODES["oja"]:
            delta = oja(xd, wd)
        elif code == RULE_CODES["sanger"]:
            delta = sanger(xd, wd)
        elif code == RULE_CODES["bcm"]:
            if theta is None:
                raise ValueError("hebbian_update: rule 'bcm' needs theta")
            delta = bcm(xd, wd, theta.double())
        else:
            delta = softhebb(xd, wd, temperature)
    norm_p = p if code == RULE_CODES["krotov"] else 2.0
    rate = adaptive_rate(wd, lr, lr_power, norm_p)
    if normalize and delta.numel() > 0:
        peak = delta.abs().max()
        # A NaN peak (a non-finite input) propagates, as in the kernels; only a zero update stays zero.
        delta = torch.zeros_like(delta) if peak == 0 else delta / peak
    grad = -rate[:, None] * delta
    return u.to(x.dtype), grad.to(x.dtype)
