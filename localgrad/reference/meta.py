"""Meta-learned plasticity (issue 20): the inner loops whose meta-parameters
an outer loop learns by ordinary backprop, in plain differentiable PyTorch.
They are the oracle of the fused ops (localgrad/ops/meta.py) and their
fallback without the extension; autograd through them is the meta-gradient
the hand-written backward op must reproduce.
"""

from __future__ import annotations

import torch

from localgrad.activations import Activation

# Plastic layers ---------------------------------------------------------------
# Differentiable plasticity (Miconi, Clune & Stanley 2018, "Differentiable
# plasticity: training plastic neural networks with backpropagation", eqs. 1-2;
# the recurrent form of their pattern-memorisation and maze experiments).
# Each connection has a fixed weight W_ij and a plasticity coefficient α_ij;
# its effective weight is W_ij + α_ij Hebb_ij, where the Hebbian trace Hebb is
# an exponential moving average of the product of post- and pre-synaptic
# activity, kept per episode (B episodes run in parallel):
#
#   y_t = f(u_t + (W + α ⊙ H_{t-1}) p_t)             (B, N_out)
#   H_t = (1 - η) H_{t-1} + η y_t p_tᵀ                (B, N_out, N_in)
#
# p_t, the plastic input, is a given x_t (feed-forward) or the layer's own
# previous output y_{t-1} with y_{-1} = 0 (recurrent, N_in = N_out); u_t is a
# non-plastic drive the caller computes (e.g. W_in x_t + b). W, α (N_out, N_in)
# and the scalar η in [0, 1) are the meta-parameters; H_0 is usually 0.
#
# Modulated plasticity: a given m (T, B) scales the rate of each step and
# episode, η_t = η m_t, in the spirit of the neuromodulation of Miconi et al.
# 2019 ("Backpropamine"), where a signal M(t) gates how much the trace moves.
# Their clipped additive trace Clip(H + M x yᵀ) cannot be run backwards;
# this keeps the EMA, so η m_t must stay in [0, 1).

PLASTIC_ACTIVATIONS = (Activation.IDENTITY, Activation.TANH)


def _activate(a: torch.Tensor, activation: int) -> torch.Tensor:
    if Activation(activation) is Activation.TANH:
        return torch.tanh(a)
    if Activation(activation) is Activation.IDENTITY:
        return a
    raise ValueError(f"plastic_episode: activation must be identity (1) or tanh (4), got {activation}")


def plastic_episode(u: torch.Tensor, x: torch.Tensor | None, weight: torch.Tensor, alpha: torch.Tensor,
                    eta, h0: torch.Tensor, activation: int = Activation.TANH, modulation: torch.Tensor | None = None,
                    *, _traces: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One episode of T plastic steps. u: (T, B, N_out) drive; x: (T, B,
    N_in) plastic inputs, or None for the recurrent layer (p_t = y_{t-1});
    weight, alpha: (N_out, N_in); eta: float or 0-d tensor in [0, 1);
    h0: (B, N_out, N_in); modulation: (T, B) m, the rate of step t being
    η m_t, or None. Returns ys (T, B, N_out) and H_T (B, N_out, N_in).
    Differentiable in every tensor (and eta when it is a tensor)."""
    steps, batch, n_out = u.shape
    p = None if x is not None else u.new_zeros(batch, n_out)
    h = h0
    ys = []
    for t in range(steps):
        p_t = x[t] if x is not None else p
        a = u[t] + torch.einsum("oi,bi->bo", weight, p_t) + torch.einsum("oi,boi,bi->bo", alpha, h, p_t)
        y = _activate(a, activation)
        if _traces is not None:
            _traces.append(h)
        rate = eta if modulation is None else eta * modulation[t][:, None, None]
        h = (1 - rate) * h + rate * torch.einsum("bo,bi->boi", y, p_t)
        ys.append(y)
        p = y
    ys = torch.stack(ys) if ys else u.new_empty(0, batch, n_out)
    return ys, h


def plastic_episode_traces(u, x, weight, alpha, eta, h0, activation=Activation.TANH, modulation=None) -> torch.Tensor:
    """H before each step, (T, B, N_out, N_in): what plastic_episode(...,
    store_traces=True) keeps for its backward."""
    traces = []
    plastic_episode(u, x, weight, alpha, eta, h0, activation, modulation, _traces=traces)
    return torch.stack(traces) if traces else u.new_empty(0, *h0.shape)


def plastic_episode_backward(grad_ys, grad_h, x, weight, alpha, ys, h_T, traces, eta, activation=Activation.TANH,
                             modulation=None):
    """The backward of plastic_episode written out (the maths of csrc/meta.h):
    from t = T-1 down to 0, with G = dL/dH_t,

        ga_t = (dL/dy_t + η G p_t) ⊙ f'(y_t)          (+ dL/dp_{t+1}, recurrent)
        H_{t-1} = (H_t - η y_t p_tᵀ) / (1 - η)        (or traces[t])
        dL/dp_t = (W + α ⊙ H_{t-1})ᵀ ga_t + η Gᵀ y_t
        dW += ga_t p_tᵀ,  dα += H_{t-1} ⊙ ga_t p_tᵀ,  dη += <G, y_t p_tᵀ - H_{t-1}>
        G <- (1 - η) G + α ⊙ ga_t p_tᵀ

    summed over the episodes; modulated, η_t = η m_t takes η's place in every
    line and dL/dη_t = <G, y_t p_tᵀ - H_{t-1}> per episode gives dη = Σ m dL/dη_t
    and dm = η dL/dη_t. Returns (grad_u, grad_x (or an empty (0,) when x is
    None), grad_weight, grad_alpha, grad_eta (0-d), grad_h0, grad_modulation
    (an empty (0,) when modulation is None))."""
    steps, batch, n_out = grad_ys.shape
    g = torch.zeros_like(h_T) if grad_h is None else grad_h.clone()
    h = h_T.clone()
    grad_u = torch.empty_like(grad_ys)
    grad_x = torch.zeros_like(x) if x is not None else grad_ys.new_empty(0)
    grad_w = torch.zeros_like(weight)
    grad_alpha = torch.zeros_like(alpha)
    grad_rate = grad_ys.new_zeros(steps, batch)
    carry = None
    for t in reversed(range(steps)):
        p = x[t] if x is not None else (ys[t - 1] if t > 0 else grad_ys.new_zeros(batch, n_out))
        y = ys[t]
        rate = torch.full((batch,), float(eta), dtype=grad_ys.dtype) if modulation is None else eta * modulation[t]
        e = rate[:, None, None]
        h_prev = traces[t] if traces is not None else (h - e * torch.einsum("bo,bi->boi", y, p)) / (1 - e)
        gy = grad_ys[t] + rate[:, None] * torch.einsum("boi,bi->bo", g, p)
        if carry is not None:
            gy = gy + carry
        ga = gy * (1 - y * y if Activation(activation) is Activation.TANH else torch.ones_like(y))
        grad_u[t] = ga
        outer = torch.einsum("bo,bi->boi", ga, p)
        grad_p = (ga @ weight + torch.einsum("oi,boi,bo->bi", alpha, h_prev, ga)
                  + rate[:, None] * torch.einsum("boi,bo->bi", g, y))
        grad_w += outer.sum(0)
        grad_alpha += (h_prev * outer).sum(0)
        grad_rate[t] = (g * (torch.einsum("bo,bi->boi", y, p) - h_prev)).sum((1, 2))
        g = (1 - e) * g + alpha * outer
        h = h_prev
        if x is not None:
            grad_x[t] = grad_p
        else:
            carry = grad_p
    if modulation is None:
        return grad_u, grad_x, grad_w, grad_alpha, grad_rate.sum(), g, grad_ys.new_empty(0)
    return grad_u, grad_x, grad_w, grad_alpha, (grad_rate * modulation).sum(), g, eta * grad_rate
