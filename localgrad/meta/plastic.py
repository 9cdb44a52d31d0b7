"""Plastic layers of differentiable plasticity (Miconi, Clune & Stanley 2018):
each connection has a fixed weight W and a plasticity coefficient α on top of
a Hebbian trace H that the episode itself writes,

    y_t = f(u_t + (W + α ⊙ H_{t-1}) p_t),   H_t = (1 - η) H_{t-1} + η y_t p_tᵀ,

and W, α and η are meta-learned by ordinary backprop through the episode.
The episode is one fused op and its backward a second one, joined by
PlasticEpisode, the one autograd.Function of localgrad. The forward keeps the
T traces H_{t-1} (batch, n_out, n_in) for the backward (store_traces=True,
the default). store_traces=False keeps none and rebuilds them in reverse,
H_{t-1} = (H_t - η y_t p_tᵀ) / (1 - η), which divides whatever rounding error
H_t carries by 1 - η at every step, however bounded the activity: after T
steps the error has grown (1 - η)^-T-fold, e.g. 1.4e9 at η = 0.1, T = 200,
where a float32 meta-gradient comes out wrong by orders of magnitude. So
that path first estimates the error and refuses an episode it cannot
differentiate (recompute_error_estimate, RECOMPUTE_TOLERANCE).
Maths: localgrad/reference/meta.py.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from localgrad.activations import Activation
from localgrad.ops import meta as ops
from localgrad._checks import as_float

_ACTIVATIONS = {"tanh": Activation.TANH, "identity": Activation.IDENTITY}

# The largest estimated relative error of the rebuilt traces store_traces=False
# accepts. An estimate, not a bound: at the threshold, the meta-gradients of
# episodes like the tests' (tanh and identity, feed-forward and recurrent,
# η 0.1 to 0.7) were off by 0.03 to 9 times it, 26 times for a recurrent
# identity layer whose activity grows.
RECOMPUTE_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-8}


def recompute_error_estimate(eta: float, steps: int, dtype: torch.dtype, modulation=None) -> tuple[float, float]:
    """(growth, estimate) for the backward that rebuilds the traces:
    growth = Π_t 1 / (1 - η m_t), the factor by which H_{t-1} = (H_t -
    η m_t y_t p_tᵀ) / (1 - η m_t) multiplies a rounding error of H_T on its
    way back to H_0 (the largest over the episodes; (1 - η)^-T unmodulated),
    and estimate = growth times dtype's epsilon, the relative error that
    leaves in the traces and so in the meta-gradient. Both are nan where a
    rate is outside [0, 1) (the ops refuse it by name), inf past float64."""
    if modulation is None:
        if not 0.0 <= eta < 1.0:
            return math.nan, math.nan
        log_growth = -steps * math.log1p(-eta)
    elif modulation.numel() == 0:
        log_growth = 0.0
    else:
        rates = eta * modulation.double()
        if not bool(((rates >= 0) & (rates < 1)).all()):
            return math.nan, math.nan
        # The backward divides by each step's own factor: their product, not
        # the largest to the power T (a uniform m in [0, 3) at η = 0.1 grows
        # errors about 4e3-fold in 50 steps, where 0.7^-50 would say 6e7).
        log_growth = float((-torch.log1p(-rates)).sum(0).max())
    if log_growth > 709.0:  # past exp's float64 range
        return math.inf, math.inf
    growth = math.exp(log_growth)
    return growth, growth * torch.finfo(dtype).eps


def _refuse_inexact_recompute(eta: float, steps: int, dtype: torch.dtype, modulation) -> None:
    tolerance = RECOMPUTE_TOLERANCE.get(dtype)  # other dtypes: the op refuses them by name
    growth, estimate = recompute_error_estimate(eta, steps, dtype, modulation)
    if tolerance is not None and estimate > tolerance:
        rate = "eta" if modulation is None else "eta m_t (the worst episode)"
        raise ValueError(
            f"PlasticEpisode: store_traces=False rebuilds the Hebbian traces backwards, dividing by 1 - {rate} "
            f"each step: over these {steps} steps at eta = {eta:g} rounding errors grow {growth:.3g}-fold, which "
            f"times the {dtype} epsilon {torch.finfo(dtype).eps:.3g} estimates a relative error of {estimate:.3g} "
            f"in the meta-gradient, above the {tolerance:g} allowed for {dtype} (RECOMPUTE_TOLERANCE). Use "
            f"store_traces=True (the default: exact, keeping T x batch x out x in values), fewer steps or a "
            f"smaller eta.")


class PlasticEpisode(torch.autograd.Function):
    """PlasticEpisode.apply(u, x, weight, alpha, eta, h0, activation=TANH,
    store_traces=True, modulation=None) -> (ys, h_T). u: (T, batch, n_out); x: (T, batch,
    n_in) or None (recurrent: p_t = y_{t-1}, y_0 = 0); weight, alpha:
    (n_out, n_in); eta: a float or a 0-d tensor in [0, 1) (its gradient is
    returned when it is a tensor); h0: (batch, n_out, n_in); modulation:
    (T, batch) m, step t's rate being eta m_t (in [0, 1)), or None.
    store_traces=False rebuilds the traces in the backward instead of keeping
    them, and raises ValueError where recompute_error_estimate exceeds
    RECOMPUTE_TOLERANCE (with a modulation this reads it, a device sync).
    Differentiable in u, x, weight, alpha, eta, h0 and modulation."""

    @staticmethod
    def forward(ctx, u, x, weight, alpha, eta, h0, activation=Activation.TANH, store_traces=True, modulation=None):
        eta_value = float(eta)
        if not store_traces:
            _refuse_inexact_recompute(eta_value, u.shape[0], u.dtype, modulation)
        ys, h_T, traces = ops.plastic_episode(u, x, weight, alpha, h0, eta_value, int(activation), store_traces,
                                              modulation)
        ctx.save_for_backward(x, weight, alpha, ys, h_T, traces if store_traces else None, modulation)
        ctx.eta, ctx.activation = eta_value, int(activation)
        ctx.eta_shape = eta.shape if isinstance(eta, torch.Tensor) else None
        return ys, h_T

    @staticmethod
    @once_differentiable  # the backward op has no backward of its own
    def backward(ctx, grad_ys, grad_h):
        x, weight, alpha, ys, h_T, traces, modulation = ctx.saved_tensors
        if grad_ys is None:
            grad_ys = torch.zeros_like(ys)
        grad_u, grad_x, grad_w, grad_alpha, grad_eta, grad_h0, grad_m = ops.plastic_episode_backward(
            grad_ys, grad_h, x, weight, alpha, ys, h_T, traces, ctx.eta, ctx.activation, modulation)
        grad_eta = grad_eta.reshape(ctx.eta_shape) if ctx.eta_shape is not None else None
        return (grad_u, grad_x if x is not None else None, grad_w, grad_alpha, grad_eta, grad_h0, None, None,
                grad_m if modulation is not None else None)


class PlasticLayer(nn.Module):
    """A plastic layer (Miconi et al. 2018): forward(u, x=None, h0=None) runs
    an episode of T steps and returns (ys (T, batch, out_features), h_T
    (batch, out_features, in_features)). u: (T, batch, out_features), the
    non-plastic drive (e.g. W_in x_t + b, computed by the caller); x: (T,
    batch, in_features), the plastic inputs of a feed-forward layer; a
    recurrent layer (recurrent=True, in_features = out_features) takes its
    own previous output and no x. h0: the traces at the start (zeros if None).
    modulation: (T, batch) m, scaling each step's rate to eta m_t (the
    modulated variant; eta m_t must stay in [0, 1)), or None.
    The meta-parameters: weight W, alpha α (out, in) and, with learn_eta,
    the scalar eta η (kept in [0, 1): a value outside is refused). With
    learn_eta=False the layer compiles with torch.compile(fullgraph=True); a
    learned η is read as a number each episode, a graph break.
    store_traces=True (the default) keeps the T traces for the backward,
    T x batch x out x in values; False rebuilds them backwards in O(1) memory
    and refuses an episode whose estimated error exceeds RECOMPUTE_TOLERANCE
    (see PlasticEpisode), which in float32 at η = 0.1 means T > 63."""

    def __init__(self, in_features: int, out_features: int, *, recurrent: bool = False, activation: str = "tanh",
                 eta: float = 0.1, learn_eta: bool = True, store_traces: bool = True):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"PlasticLayer: activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if recurrent and in_features != out_features:
            raise ValueError(f"PlasticLayer: a recurrent layer needs in_features = out_features, "
                             f"got {in_features} and {out_features}")
        eta = as_float(eta, "PlasticLayer", "eta")
        if not 0.0 <= eta < 1.0:
            raise ValueError(f"PlasticLayer: eta must be in [0, 1), got {eta}")
        self.in_features, self.out_features = in_features, out_features
        self.recurrent, self.activation, self.store_traces = recurrent, activation, store_traces
        bound = 1.0 / math.sqrt(max(in_features, 1))
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        # Small plasticity coefficients at the start, as in Miconi et al.'s runs.
        self.alpha = nn.Parameter(torch.empty(out_features, in_features).uniform_(-0.1 * bound, 0.1 * bound))
        # A fixed eta stays a Python float: the op takes eta as a number, and
        # reading one out of a tensor would break a torch.compile graph.
        self.eta = nn.Parameter(torch.tensor(float(eta))) if learn_eta else float(eta)

    def forward(self, u: torch.Tensor, x: torch.Tensor | None = None, h0: torch.Tensor | None = None,
                modulation: torch.Tensor | None = None):
        if self.recurrent and x is not None:
            raise ValueError("PlasticLayer: a recurrent layer takes its own outputs as plastic inputs; pass no x")
        if not self.recurrent and x is None:
            raise ValueError("PlasticLayer: a feed-forward layer needs x (T, batch, in_features)")
        if u.dim() != 3:
            raise ValueError(f"PlasticLayer: u must be (T, batch, out_features), got shape {tuple(u.shape)}")
        if h0 is None:
            h0 = u.new_zeros(u.shape[1], self.out_features, self.in_features)
        return PlasticEpisode.apply(u, x, self.weight, self.alpha, self.eta, h0,
                                    _ACTIVATIONS[self.activation], self.store_traces, modulation)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, recurrent={self.recurrent}, "
                f"activation={self.activation!r}, store_traces={self.store_traces}")
