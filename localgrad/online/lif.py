"""Recurrent spiking networks of LIF and ALIF neurons, as in Bellec et al., "A
solution to the learning dilemma for recurrent networks of spiking neurons",
Nature Communications 11, 3625 (2020), Methods, and their surrogate-gradient
BPTT baseline.

Per time step t (batch rows; pre_t = [x_t, z_{t-1}]; all states start at 0):

    a_t   = rho a_{t-1} + z_{t-1}                               (ALIF only)
    v_t   = alpha v_{t-1} + W_in x_t + W_rec z_{t-1} - v_th z_{t-1}
                                                                (reset by subtraction)
    A_t   = v_th + beta a_t                                     (LIF: A_t = v_th)
    z_t   = H(v_t - A_t)                                        (H(u) = 1 for u > 0, else 0)
    psi_t = gamma max(0, 1 - |v_t - A_t| / v_th)                (pseudo-derivative dz_t/dv_t)
    y_t   = kappa y_{t-1} + W_out z_t + b_out                   (leaky readout)

with alpha = exp(-dt/tau_m), rho = exp(-dt/tau_a), kappa = exp(-dt/tau_out).
The paper writes psi with a factor 1/v_th and the spike as H((v - A)/v_th);
here that factor is part of gamma. W_rec has no self-connections: its
diagonal is zero and kept zero (the forward pass masks it, so its gradient is
zero too). Parameters: weight_in (hidden, n_in), weight_rec (hidden, hidden),
readout (nn.Linear(hidden, n_out): weight, bias).

The e-prop learners (localgrad.online.eprop_spiking) implement the same
equations in a fused op; SpikingBPTT differentiates them with autograd, with
psi as the derivative of the spike (the surrogate gradient).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from localgrad._checks import as_float, as_int


class SpikeFunction(torch.autograd.Function):
    """z = H(u), u = v - A, with dz/du := gamma max(0, 1 - |u| / v_th)."""

    @staticmethod
    def forward(ctx, u, v_th: float, gamma: float):
        ctx.save_for_backward(u)
        ctx.v_th, ctx.gamma = v_th, gamma
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad_z):
        (u,) = ctx.saved_tensors
        psi = ctx.gamma * torch.clamp(1 - u.abs() / ctx.v_th, min=0)
        return grad_z * psi, None, None


def spike(u: torch.Tensor, v_th: float, gamma: float) -> torch.Tensor:
    return SpikeFunction.apply(u, v_th, gamma)


class LIF(nn.Module):
    """A recurrent network of leaky integrate-and-fire neurons with a leaky
    readout (equations in the module docstring; LIF: no adaptation)."""

    adaptive = False

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        tau_m: float = 20.0,
        tau_out: float = 20.0,
        dt: float = 1.0,
        v_th: float = 1.0,
        gamma: float = 0.3,
        weight_scale: float = 1.0,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ):
        super().__init__()
        name = type(self).__name__
        input_size, hidden_size, output_size = (
            as_int(value, name, key) for value, key in
            ((input_size, "input_size"), (hidden_size, "hidden_size"), (output_size, "output_size"))
        )  # fmt: skip
        # Time constants and the step set the decays exp(-dt / tau): a
        # negative or zero tau, or a NaN anywhere, gives no leaky neuron.
        tau_m = as_float(tau_m, name, "tau_m", positive=True)
        tau_out = as_float(tau_out, name, "tau_out", positive=True)
        dt = as_float(dt, name, "dt", positive=True)
        v_th = as_float(v_th, name, "v_th")
        gamma = as_float(gamma, name, "gamma")
        weight_scale = as_float(weight_scale, name, "weight_scale")
        if min(input_size, hidden_size, output_size) < 1:
            raise ValueError(
                f"{type(self).__name__}: sizes must be positive, got input_size={input_size}, "
                f"hidden_size={hidden_size}, output_size={output_size}"
            )
        if v_th <= 0:
            raise ValueError(f"{type(self).__name__}: v_th must be positive, got {v_th}")
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, output_size
        self.alpha = math.exp(-dt / tau_m)
        self.kappa = math.exp(-dt / tau_out)
        self.v_th, self.gamma = float(v_th), float(gamma)
        self.rho, self.beta = 0.0, 0.0
        kw = {"dtype": dtype, "device": device}
        self.weight_in = nn.Parameter(torch.randn(hidden_size, input_size, **kw) * weight_scale / math.sqrt(input_size))
        rec = torch.randn(hidden_size, hidden_size, **kw) * weight_scale / math.sqrt(hidden_size)
        self.register_buffer("rec_mask", 1 - torch.eye(hidden_size, **kw), persistent=False)
        self.weight_rec = nn.Parameter(rec * self.rec_mask)
        self.readout = nn.Linear(hidden_size, output_size, **kw)

    def neuron_constants(self) -> tuple[float, float, float, float, float, float]:
        """(alpha, rho, beta, v_th, gamma, kappa), the `neuron` argument of eprop_lif_chunk."""
        return (self.alpha, self.rho, self.beta, self.v_th, self.gamma, self.kappa)

    def initial_state(self, batch_size: int) -> dict[str, torch.Tensor]:
        """All-zero state: membrane v, adaptation a, spikes z, readout y."""
        p = self.weight_in
        zeros = lambda n: torch.zeros(batch_size, n, dtype=p.dtype, device=p.device)  # noqa: E731
        return {"v": zeros(self.hidden_size), "a": zeros(self.hidden_size),
                "z": zeros(self.hidden_size), "y": zeros(self.output_size)}  # fmt: skip

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor],
             weight_rec: torch.Tensor | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
        """One time step with autograd (surrogate gradient). Returns the new
        state; its "z" is the step's spikes, "y" the readout. For ALIF the
        adaptation reads its own copy of the spikes ("z_adapt", the same
        values), so that the gradient w.r.t. "z" is Bellec's dE/dz_t: every
        path from z_t except through a_{t+1}, which e-prop's eligibility
        vector carries. weight_rec: the masked W_rec, when the caller made it
        once for many steps (else it is made here)."""
        z_prev = state["z"]
        w_rec = self.weight_rec * self.rec_mask if weight_rec is None else weight_rec
        a = state["a"]
        threshold = self.v_th
        if self.adaptive:
            a = self.rho * a + state.get("z_adapt", z_prev)
            threshold = self.v_th + self.beta * a
        v = self.alpha * state["v"] + F.linear(x_t, self.weight_in) + F.linear(z_prev, w_rec) - self.v_th * z_prev
        u = v - threshold
        z = spike(u, self.v_th, self.gamma)
        y = self.kappa * state["y"] + self.readout(z)
        new = {"v": v, "a": a, "z": z, "y": y}
        if self.adaptive:
            new["z_adapt"] = spike(u, self.v_th, self.gamma)
        return new

    def forward(self, xs: torch.Tensor, state: dict[str, torch.Tensor] | None = None):
        """xs: (T, batch, n_in). Returns (ys (T, batch, n_out), spikes (T,
        batch, hidden), final state), differentiable by autograd."""
        if state is None:
            state = self.initial_state(xs.shape[1])
        ys, zs = [], []
        w_rec = self.weight_rec * self.rec_mask  # once: autograd keeps one copy, not one per step
        for t in range(xs.shape[0]):
            state = self.step(xs[t], state, w_rec)
            ys.append(state["y"])
            zs.append(state["z"])
        return torch.stack(ys), torch.stack(zs), state


class ALIF(LIF):
    """LIF with threshold adaptation: A_t = v_th + beta a_t, a_t = rho a_{t-1}
    + z_{t-1}, rho = exp(-dt/tau_a) (equations in the module docstring)."""

    adaptive = True

    def __init__(self, input_size: int, hidden_size: int, output_size: int, tau_a: float = 200.0,
                 beta: float = 0.5, **kwargs):  # fmt: skip
        super().__init__(input_size, hidden_size, output_size, **kwargs)
        tau_a = as_float(tau_a, type(self).__name__, "tau_a", positive=True)
        self.rho = math.exp(-float(kwargs.get("dt", 1.0)) / tau_a)
        self.beta = as_float(beta, type(self).__name__, "beta")
