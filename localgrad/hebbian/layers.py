"""Hebbian layers: they learn without labels or feedback, one fused
`localgrad.ops.hebbian_update` per layer and batch in the forward pass of
training mode, which writes `-rate dW` into `weight.grad` so that any
optimizer applies the rule (plain SGD with lr 1: W += rate dW)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from localgrad import distributed, ops
from localgrad.learner import add_to_grad
from localgrad._checks import as_bool, as_float, as_int
from localgrad.reference import hebbian as ref

# The forward activations the next layer or the probe sees; u is the
# pre-activation (Krotov: the p-currents).
ACTIVATIONS = ("none", "relu", "repu", "triangle")

# Published settings per rule (Journe et al. 2023 for SoftHebb; Krotov &
# Hopfield 2019 for Krotov; classic rules: plain constant rate).
DEFAULTS = {
    "oja": {"lr": 0.01},
    "sanger": {"lr": 0.01},
    "bcm": {"lr": 0.01},
    "softhebb": {"lr": 0.03, "temperature": 1.0, "lr_power": 0.5, "normalize": True},
    "krotov": {"lr": 0.02, "p": 3.0, "rank": 2, "anti": 0.4, "normalize": True},
}


def _activate(u: torch.Tensor, kind: str, power: float, dim: int = 1) -> torch.Tensor:
    if kind == "none":
        return u
    if kind == "relu":
        return F.relu(u)
    if kind == "repu":  # Krotov & Hopfield's rectified power for the classifier
        return F.relu(u).pow(power)
    # Journe et al.'s triangle: units above the mean activity of their layer
    return F.relu(u - u.mean(dim=dim, keepdim=True)).pow(power)


class _HebbianBase(nn.Module):
    def _setup(self, rule, n_out, fan_in, lr, temperature, p, rank, anti, lr_power, normalize, theta_rate,
               activation, power, normalize_input):
        if not isinstance(rule, str):
            raise TypeError(f"{type(self).__name__}: rule must be a rule name ({', '.join(ref.RULE_NAMES)}), got {rule!r}")
        ref.rule_code(rule)
        self.rule = rule
        if activation not in ACTIVATIONS:
            raise ValueError(f"hebbian: activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        d = DEFAULTS[rule]
        op = type(self).__name__
        self.lr = d.get("lr", 0.01) if lr is None else as_float(lr, op, "lr")
        self.temperature = (d.get("temperature", 1.0) if temperature is None
                            else as_float(temperature, op, "temperature", positive=True))
        self.p = d.get("p", 3.0) if p is None else as_float(p, op, "p")
        self.rank = d.get("rank", 2) if rank is None else as_int(rank, op, "rank", minimum=1)
        self.anti = d.get("anti", 0.4) if anti is None else as_float(anti, op, "anti")
        self.lr_power = d.get("lr_power", 0.0) if lr_power is None else as_float(lr_power, op, "lr_power")
        self.normalize = d.get("normalize", False) if normalize is None else as_bool(normalize, op, "normalize")
        # theta is a running mean of y^2: a rate outside [0, 1] extrapolates
        # past y^2 (or away from it) and the threshold no longer tracks it.
        self.theta_rate = as_float(theta_rate, op, "theta_rate", nonnegative=True)
        if self.theta_rate > 1:
            raise ValueError(f"{op}: theta_rate must be in [0, 1], got {self.theta_rate}")
        self.activation = activation
        self.power = as_float(power, op, "power")
        self.normalize_input = as_bool(normalize_input, op, "normalize_input")
        self.learning = True
        # BCM's sliding threshold, a running mean of y^2 (a buffer: in state_dict).
        self.register_buffer("theta", torch.zeros(n_out) if rule == "bcm" else None)
        w = self.weight
        with torch.no_grad():
            if rule in ("softhebb", "krotov"):
                # Off the unit sphere at start, so that the adaptive rate
                # (which vanishes on it) starts large (Journe et al.).
                w.normal_(0.0, math.sqrt(2.0 / fan_in) if rule == "softhebb" else 1.0)
            else:
                w.normal_(0.0, 0.1 / math.sqrt(fan_in))

    def _hebbian_step(self, x2d: torch.Tensor) -> torch.Tensor:
        """Pre-activations of `x2d` (rows: samples or patches) under the
        weight viewed as (n_out, fan_in); in training mode with learning on,
        also the rule's update into weight.grad (then averaged over the
        ranks of a process group)."""
        w2d = self.weight.detach().reshape(self.weight.shape[0], -1)
        if not (self.training and self.learning):
            if self.rule == "krotov" and self.p != 2.0:
                return ref.krotov_currents(x2d, w2d, self.p)
            return x2d @ w2d.T
        distributed.check_not_fully_sharded(self, "Hebbian")
        # Under a process group, what depends on the whole batch is computed
        # from the union batch: the max-abs normalisation divides the ranks'
        # averaged dW by its peak (the op returns the raw -dW for that), and
        # BCM's threshold moves by the mean of y^2 over every rank's samples.
        split = self.normalize and distributed.world_size() > 1
        u, grad = ops.hebbian_update(
            x2d, w2d, self.rule, theta=self.theta, temperature=self.temperature, p=self.p, rank=self.rank,
            anti=self.anti, lr=1.0 if split else self.lr, lr_power=0.0 if split else self.lr_power,
            normalize=False if split else self.normalize)
        distributed.average_tensors([grad])
        if split:
            peak = grad.abs().max() if grad.numel() else grad.new_zeros(())
            norm_p = self.p if self.rule == "krotov" else 2.0
            rate = ref.adaptive_rate(w2d.double(), self.lr, self.lr_power, norm_p).to(grad.dtype)
            grad = torch.where(peak > 0, grad * (rate[:, None] / peak), torch.zeros_like(grad))
        add_to_grad(self.weight, grad, owned=True)
        if self.rule == "bcm":
            with torch.no_grad():
                y2 = (u * u).mean(0) if x2d.shape[0] > 0 else torch.zeros_like(self.theta)
                distributed.average_tensors([y2])
                if x2d.shape[0] > 0 or distributed.world_size() > 1:
                    self.theta.lerp_(y2, self.theta_rate)
        return u

    def _prepare_input(self, x2d: torch.Tensor) -> torch.Tensor:
        x2d = x2d.detach()
        if self.normalize_input:
            x2d = x2d / x2d.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return x2d


class HebbianLinear(_HebbianBase):
    """A linear layer learning by `rule` ("oja", "sanger", "bcm", "softhebb",
    "krotov"; see localgrad/reference/hebbian.py) without labels. Knobs left
    None take the published values (DEFAULTS). `activation` is applied to
    the output the next layer sees (not to the rule's own y); `power` is the
    exponent of "repu" and "triangle"; `normalize_input` scales each input to
    unit norm (Krotov & Hopfield need it). Set `.learning = False` (or eval
    mode) to freeze."""

    def __init__(self, in_features: int, out_features: int, rule: str = "softhebb", *, lr=None,
                 temperature=None, p=None, rank=None, anti=None, lr_power=None, normalize=None,
                 theta_rate: float = 0.1, activation: str = "none", power: float = 1.0,
                 normalize_input: bool = False, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        self._setup(rule, out_features, in_features, lr, temperature, p, rank, anti, lr_power, normalize,
                    theta_rate, activation, power, normalize_input)
        if self.theta is not None:
            self.theta = self.theta.to(device=device, dtype=self.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2d = self._prepare_input(x.flatten(1))
        return _activate(self._hebbian_step(x2d), self.activation, self.power)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rule={self.rule!r}"


class HebbianConv2d(_HebbianBase):
    """A convolution learning by `rule`: every input patch (unfold, ATen) is
    one sample of the rule, so SoftHebb's soft WTA runs over the channels at
    each position, as in Journe et al.; the weight-gradient products are the
    op's GEMMs over batch x positions patches."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, rule: str = "softhebb", *,
                 stride: int = 1, padding: int = 0, lr=None, temperature=None, p=None, rank=None, anti=None,
                 lr_power=None, normalize=None, theta_rate: float = 0.1, activation: str = "none",
                 power: float = 1.0, normalize_input: bool = False, device=None, dtype=None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        fan_in = in_channels * kernel_size * kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size,
                                               device=device, dtype=dtype))
        self._setup(rule, out_channels, fan_in, lr, temperature, p, rank, anti, lr_power, normalize, theta_rate,
                    activation, power, normalize_input)
        if self.theta is not None:
            self.theta = self.theta.to(device=device, dtype=self.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Checked before the step: unfold of the wrong channel count can still
        # reshape into patches, and the step would write weight.grad from them
        # before any later shape error.
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"HebbianConv2d: x must be (batch, {self.in_channels}, height, width), "
                             f"got shape {tuple(x.shape)}")
        b, _, h, w = x.shape
        k, s, pad = self.kernel_size, self.stride, self.padding
        oh, ow = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
        patches = F.unfold(x.detach(), k, padding=pad, stride=s).transpose(1, 2).reshape(-1, self.weight[0].numel())
        u = self._hebbian_step(self._prepare_input(patches))
        u = u.reshape(b, oh * ow, self.out_channels).transpose(1, 2).reshape(b, self.out_channels, oh, ow)
        return _activate(u, self.activation, self.power, dim=1)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, rule={self.rule!r}")
