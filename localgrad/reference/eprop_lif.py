"""Spiking e-prop over a chunk of time steps, reference implementation.

Bellec et al., "A solution to the learning dilemma for recurrent networks of
spiking neurons", Nature Communications 11, 3625 (2020). Equation numbers are
the paper's where given (eq. 1: the factorisation dE/dW = sum_t dE/dz_t e_t;
eq. 3: the gradient as learning signal times eligibility trace; eq. 14: the
forward recursion of the eligibility vector); the neuron models and traces are
those of its Methods sections on LIF and ALIF neurons. Per sample, with h_t = (v_t, a_t) the neuron state, pre_t =
[x_t, z_{t-1}] the presynaptic activity of the step (inputs first, then the
recurrent spikes; W = [W_in | W_rec], shape (hidden, n_in + hidden)):

  network (Methods, LIF and ALIF neurons):
    a_t = rho a_{t-1} + z_{t-1}                           (ALIF only)
    v_t = alpha v_{t-1} + W pre_t - v_th z_{t-1}          (reset by subtraction)
    A_t = v_th + beta a_t                                 (LIF: A_t = v_th)
    z_t = H(v_t - A_t)                                    (H(u) = 1 for u > 0)
    psi_t = gamma max(0, 1 - |v_t - A_t| / v_th)          (pseudo-derivative;
                                                           the paper's 1/v_th is in gamma)
    y_t = kappa y_{t-1} + W_out z_t + b_out               (leaky readout)

  eligibility vectors (eq. 14) and traces, LIF and ALIF:
    eps_t[i]      = alpha eps_{t-1}[i] + pre_t[i]         (low-pass presynaptic trace)
    epsa_t[j, i]  = psi_{t-1}[j] eps_{t-1}[i] + (rho - beta psi_{t-1}[j]) epsa_{t-1}[j, i]
    e_t[j, i]     = psi_t[j] (eps_t[i] - beta epsa_t[j, i])

  weight update (eq. 3, with the readout filter of the Methods' e-prop for
  a leaky readout):
    dE/dy_t = the per-step loss gradient (mse: 2 (y_t - y*_t) / (batch n_out);
              cross-entropy: (softmax(y_t) - onehot) / batch at steps whose
              target is >= 0)
    L_t[j] = sum_k B[k, j] dE/dy_t[k]                     (B = W_out: symmetric, or random)
    ebar_t = kappa ebar_{t-1} + e_t                       (readout-filtered trace)
    grad W += sum_batch L_t[j] ebar_t[j, i]
    grad [W_out | b_out] += sum_batch dE/dy_t[k] zk_t[j], with zk_t = kappa zk_{t-1} + [z_t, 1]
                                                          (exact: the readout is linear)

  With mode "signal" the learning signal is given per step (signal[t], e.g. the
  total derivative dE/dz_t from autograd) and the unfiltered trace is used:
    grad W += sum_batch signal_t[j] e_t[j, i]             (eq. 1: equals BPTT exactly)

Shapes: x (T, batch, n_in); weight_in (hidden, n_in); weight_rec (hidden,
hidden); weight_out (n_out, hidden); bias_out (n_out,); feedback (n_out,
hidden). State, updated in place: v, a, z, psi (batch, hidden); y (batch,
n_out); pre_trace (batch, n_in + hidden); adapt_trace, filt_trace (batch,
hidden, n_in + hidden); out_trace (batch, hidden + 1). Accumulated in place:
grad_w (hidden, n_in + hidden), grad_out (n_out, hidden + 1). Written:
outputs (T, batch, n_out), the readout y_t of every step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

MODES = ("mse", "ce", "signal")


def output_error(y: torch.Tensor, target: torch.Tensor, mode: str, scale: float) -> torch.Tensor:
    """dE_t/dy_t of one step: (batch, n_out)."""
    if mode == "mse":
        return (y - target) * scale
    valid = target >= 0
    onehot = torch.zeros_like(y)
    onehot[valid, target[valid]] = 1
    return (torch.softmax(y, dim=1) - onehot) * valid.unsqueeze(1).to(y.dtype) * scale


def eprop_lif_chunk(
    x: torch.Tensor,
    weight_in: torch.Tensor,
    weight_rec: torch.Tensor,
    weight_out: torch.Tensor,
    bias_out: torch.Tensor,
    feedback: torch.Tensor,
    target: torch.Tensor | None,
    signal: torch.Tensor | None,
    neuron: Sequence[float],
    adaptive: bool,
    mode: str,
    loss_scale: float,
    v: torch.Tensor,
    a: torch.Tensor,
    z: torch.Tensor,
    psi: torch.Tensor,
    y: torch.Tensor,
    pre_trace: torch.Tensor,
    adapt_trace: torch.Tensor,
    filt_trace: torch.Tensor,
    out_trace: torch.Tensor,
    grad_w: torch.Tensor,
    grad_out: torch.Tensor,
    outputs: torch.Tensor,
) -> None:
    """One chunk of T steps of the equations above; neuron = (alpha, rho,
    beta, v_th, gamma, kappa). LIF ignores a, psi, adapt_trace (and rho, beta)."""
    alpha, rho, beta, v_th, gamma, kappa = (float(p) for p in neuron)
    if not adaptive:
        beta = 0.0
    w = torch.cat([weight_in, weight_rec], dim=1)
    ones = torch.ones(z.shape[0], 1, dtype=z.dtype, device=z.device)
    for t in range(x.shape[0]):
        z_prev = z.clone()
        pre = torch.cat([x[t], z_prev], dim=1)
        if adaptive:
            adapt_trace.copy_(
                psi.unsqueeze(2) * pre_trace.unsqueeze(1) + (rho - beta * psi).unsqueeze(2) * adapt_trace
            )
            a.mul_(rho).add_(z_prev)
            threshold = v_th + beta * a
        else:
            threshold = torch.full_like(v, v_th)
        pre_trace.mul_(alpha).add_(pre)
        v.copy_(alpha * v + pre @ w.T - v_th * z_prev)
        u = v - threshold
        z.copy_((u > 0).to(v.dtype))
        psi_t = gamma * torch.clamp(1 - u.abs() / v_th, min=0)
        if adaptive:
            psi.copy_(psi_t)
            e = psi_t.unsqueeze(2) * (pre_trace.unsqueeze(1) - beta * adapt_trace)
        else:
            e = psi_t.unsqueeze(2) * pre_trace.unsqueeze(1)
        y.mul_(kappa).add_(z @ weight_out.T + bias_out)
        outputs[t].copy_(y)
        out_trace.mul_(kappa).add_(torch.cat([z, ones], dim=1))
        if mode == "signal":
            grad_w.add_(torch.einsum("bj,bji->ji", signal[t], e))
            continue
        dedy = output_error(y, target[t], mode, loss_scale)
        learning_signal = dedy @ feedback
        filt_trace.mul_(kappa).add_(e)
        grad_w.add_(torch.einsum("bj,bji->ji", learning_signal, filt_trace))
        grad_out.add_(dedy.T @ out_trace)
