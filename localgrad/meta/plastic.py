"""Plastic layers of differentiable plasticity (Miconi, Clune & Stanley 2018):
each connection has a fixed weight W and a plasticity coefficient α on top of
a Hebbian trace H that the episode itself writes,

    y_t = f(u_t + (W + α ⊙ H_{t-1}) p_t),   H_t = (1 - η) H_{t-1} + η y_t p_tᵀ,

and W, α and η are meta-learned by ordinary backprop through the episode.
The episode is one fused op and its backward a second one, joined by
PlasticEpisode, the one autograd.Function of localgrad: the backward
recomputes H_{t-1} = (H_t - η y_t p_tᵀ) / (1 - η) in reverse instead of
keeping T traces of (batch, n_out, n_in), unless store_traces asks it to.
Maths: localgrad/reference/meta.py.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from localgrad.activations import Activation
from localgrad.ops import meta as ops
from localgrad.ops._common import as_float

_ACTIVATIONS = {"tanh": Activation.TANH, "identity": Activation.IDENTITY}


class PlasticEpisode(torch.autograd.Function):
    """PlasticEpisode.apply(u, x, weight, alpha, eta, h0, activation=TANH,
    store_traces=False, modulation=None) -> (ys, h_T). u: (T, batch, n_out); x: (T, batch,
    n_in) or None (recurrent: p_t = y_{t-1}, y_0 = 0); weight, alpha:
    (n_out, n_in); eta: a float or a 0-d tensor in [0, 1) (its gradient is
    returned when it is a tensor); h0: (batch, n_out, n_in); modulation:
    (T, batch) m, step t's rate being eta m_t (in [0, 1)), or None.
    Differentiable in u, x, weight, alpha, eta, h0 and modulation."""

    @staticmethod
    def forward(ctx, u, x, weight, alpha, eta, h0, activation=Activation.TANH, store_traces=False, modulation=None):
        eta_value = float(eta)
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
    learned η is read as a number each episode, a graph break."""

    def __init__(self, in_features: int, out_features: int, *, recurrent: bool = False, activation: str = "tanh",
                 eta: float = 0.1, learn_eta: bool = True, store_traces: bool = False):
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
