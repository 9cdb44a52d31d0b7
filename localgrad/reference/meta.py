"""Meta-learned plasticity, reference implementation.

Instead of designing a local learning rule by hand, parameterise it and learn
its parameters (the meta-parameters) with an outer loop, ordinary backprop
through the inner learning loop or evolution strategies ("Don't mess with
backprop", Kirsch & Schmidhuber 2021, VSML). Everything here is plain
differentiable PyTorch: autograd through `episode` is the meta-gradient.

Shapes: pre-synaptic activity x (..., batch, n_in), post-synaptic activity y
(..., batch, n_out), weight W (..., n_out, n_in), W[k, i] from input i to unit
k. Leading dimensions (independent episodes, an ES population) broadcast.
Updates are batch means (a batch of one is the online rule), as in
localgrad.reference.hebbian.

The plastic layers of differentiable plasticity (second section) are the
oracle of the fused ops (localgrad/ops/meta.py) and their fallback without
the extension; autograd through them is the meta-gradient the hand-written
backward op must reproduce.
"""

from __future__ import annotations

from typing import Callable

import torch

from localgrad.activations import Activation

# Parameterised local rules ---------------------------------------------------
#
# Polynomial rule (Confavreux, Zenke, Agnes, Lillicrap & Vogels 2020, "A
# meta-learning approach to (re)discover plasticity rules that carve a desired
# function into a neural network", NeurIPS, eq. (2)): every term up to second
# order in the pre-synaptic rate, the post-synaptic rate and the weight,
#     dW_ki = lr sum_{a,b,c in {0,1,2}} theta_abc <x_i^a y_k^b>_batch W_ki^c,
# 27 coefficients theta (3, 3, 3), theta[a, b, c] the x^a y^b w^c term.
# Oja's rule (Oja 1982) dw = y x - y^2 w is theta_110 = 1, theta_021 = -1.
#
# ABCD rule (Najarro & Risi 2020, "Meta-learning through Hebbian plasticity in
# random networks", NeurIPS, eq. (1); after Soltoggio et al. 2008), o_i the
# pre-synaptic and o_j the post-synaptic activity:
#     dw_ij = eta_ij (A_ij o_i o_j + B_ij o_i + C_ij o_j + D_ij)
# here dW_ki = eta (A <y_k x_i> + B <x_i> + C <y_k> + D), each coefficient a
# scalar (shared by every synapse) or a tensor broadcasting against W
# (per synapse: (n_out, n_in); per input: (1, n_in); ...). A alone is plain
# Hebb, dW = eta A <y x^T>.

POLYNOMIAL_ORDER = 3  # exponents 0, 1, 2 of x, y and w
OJA_THETA = {(1, 1, 0): 1.0, (0, 2, 1): -1.0}


def polynomial_theta(terms: dict | None = None, *, dtype=torch.float64) -> torch.Tensor:
    """theta (3, 3, 3) with the given {(a, b, c): value} terms, the rest 0;
    polynomial_theta(OJA_THETA) is Oja's rule."""
    theta = torch.zeros(POLYNOMIAL_ORDER, POLYNOMIAL_ORDER, POLYNOMIAL_ORDER, dtype=dtype)
    for (a, b, c), value in (terms or {}).items():
        theta[a, b, c] = value
    return theta


def _batch_mean_outer(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """<y x^T>_batch: (..., n_out, n_in); an empty batch gives zeros."""
    return y.transpose(-1, -2) @ x / max(x.shape[-2], 1)


def polynomial_update(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, theta: torch.Tensor,
                      lr: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Confavreux et al.'s polynomial rule: dW (..., n_out, n_in) =
    lr sum_abc theta_abc <x^a y^b> W^c. theta: (..., 3, 3, 3), its leading
    dimensions broadcasting against W's."""
    n = max(x.shape[-2], 1)
    ones = torch.ones_like
    pre = torch.stack((ones(x), x, x * x), -2)  # (..., batch, 3, n_in): x^a
    post = torch.stack((ones(y), y, y * y), -2)  # (..., batch, 3, n_out): y^b
    moments = torch.einsum("...nbk,...nai->...abki", post, pre) / n  # <x^a y^b>, (..., 3, 3, n_out, n_in)
    powers = torch.stack((ones(weight), weight, weight * weight), -3)  # (..., 3, n_out, n_in): W^c
    factors = torch.einsum("...abc,...cki->...abki", theta, powers)  # sum_c theta_abc W^c
    update = (moments * factors).sum((-4, -3))
    return lr * update


def abcd_update(x: torch.Tensor, y: torch.Tensor, A, B, C, D, lr=1.0) -> torch.Tensor:
    """Najarro & Risi's ABCD rule: dW (..., n_out, n_in) =
    lr (A <y x^T> + B <x> + C <y> + D); A, B, C, D and lr are scalars or
    tensors broadcasting against W."""
    n = max(x.shape[-2], 1)
    mean_x = x.sum(-2, keepdim=True) / n  # (..., 1, n_in): o_i, the pre-synaptic term
    mean_y = (y.sum(-2) / n).unsqueeze(-1)  # (..., n_out, 1): o_j, the post-synaptic term
    return lr * (A * _batch_mean_outer(y, x) + B * mean_x + C * mean_y + D)


def hebb_update(x: torch.Tensor, y: torch.Tensor, lr=1.0) -> torch.Tensor:
    """Plain Hebb, dW = lr <y x^T> (Hebb 1949)."""
    return lr * _batch_mean_outer(y, x)


def episode(update: Callable, weight: torch.Tensor, inputs: torch.Tensor, post: torch.Tensor | None = None,
            activation: Callable | None = None, history: bool = False):
    """The inner loop: T plastic steps of one layer.

    inputs: (T, ..., batch, n_in); post: None, or (T, ..., batch, n_out) the
    post-synaptic activity imposed at each step (a teacher clamping the
    units, as in supervised Hebbian learning). Step t:
        y_t = post[t] if given, else activation(x_t W_t^T) (identity if None)
        W_{t+1} = W_t + update(x_t, y_t, W_t)
    Returns W_T, or the list [W_0, ..., W_T] if history. Autograd through this
    loop stores every step's activations: memory O(T (n_out n_in + batch
    (n_in + n_out))) per episode."""
    weights = [weight]
    for t in range(inputs.shape[0]):
        x = inputs[t]
        if post is not None:
            y = post[t]
        else:
            y = x @ weight.transpose(-1, -2)
            if activation is not None:
                y = activation(y)
        weight = weight + update(x, y, weight)
        if history:
            weights.append(weight)
    return weights if history else weight



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
