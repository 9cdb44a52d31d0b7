"""The leaky rate RNN that the online learners train."""

from __future__ import annotations

import math

import torch
from torch import nn

from localgrad.activations import Activation
from localgrad.learner import add_to_grad
from localgrad._checks import as_float, as_int

_ACTIVATIONS = {"tanh": (torch.tanh, Activation.TANH), "sigmoid": (torch.sigmoid, Activation.SIGMOID),
                "relu": (torch.relu, Activation.RELU), "identity": (lambda a: a, Activation.IDENTITY)}


class LeakyRNN(nn.Module):
    """Leaky rate RNN with a linear readout:

        a_t = W_ih x_t + (W_hh ⊙ mask) h_{t−1} + b
        h_t = (1 − α) h_{t−1} + α φ(a_t)
        y_t = readout(h_t)

    Parameters `weight_ih` (H, I), `weight_hh` (H, H), `bias` (H) and `readout`
    (nn.Linear(H, O)). `recurrent_mask` (H, H, 0/1) fixes a sparsity pattern of
    W_hh: masked-out entries take no part in the dynamics and get zero gradient.
    The learners see θ as the (H, I + H + 1) matrix [W_ih | W_hh | b].
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int, alpha: float = 1.0,
                 activation: str = "tanh", recurrent_mask: torch.Tensor | None = None):
        super().__init__()
        input_size, hidden_size, output_size = (
            as_int(v, "LeakyRNN", k, minimum=1)
            for v, k in ((input_size, "input_size"), (hidden_size, "hidden_size"), (output_size, "output_size"))
        )
        alpha = as_float(alpha, "LeakyRNN", "alpha")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"LeakyRNN: alpha must be in (0, 1], got {alpha}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"LeakyRNN: activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, output_size
        self.alpha = float(alpha)
        self.activation = activation
        self.phi, self.activation_kind = _ACTIVATIONS[activation]
        bound = 1.0 / math.sqrt(hidden_size)
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(hidden_size).uniform_(-bound, bound))
        self.readout = nn.Linear(hidden_size, output_size)
        if recurrent_mask is not None:
            recurrent_mask = torch.as_tensor(recurrent_mask)
            if recurrent_mask.shape != (hidden_size, hidden_size):
                raise ValueError(f"LeakyRNN: recurrent_mask must have shape ({hidden_size}, {hidden_size}) "
                                 f"(hidden, hidden), got {tuple(recurrent_mask.shape)}")
            recurrent_mask = (recurrent_mask != 0).to(self.weight_hh.dtype)
            with torch.no_grad():
                self.weight_hh.mul_(recurrent_mask)
        self.register_buffer("recurrent_mask", recurrent_mask)

    def effective_weight_hh(self) -> torch.Tensor:
        return self.weight_hh if self.recurrent_mask is None else self.weight_hh * self.recurrent_mask

    def cell(self, x: torch.Tensor, h_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: (h_t, a_t)."""
        a = torch.nn.functional.linear(x, self.weight_ih, self.bias) + h_prev @ self.effective_weight_hh().T
        return (1 - self.alpha) * h_prev + self.alpha * self.phi(a), a

    def dphi(self, a: torch.Tensor) -> torch.Tensor:
        if self.activation == "tanh":
            return 1 - torch.tanh(a) ** 2
        if self.activation == "sigmoid":
            s = torch.sigmoid(a)
            return s * (1 - s)
        if self.activation == "relu":
            return (a > 0).to(a.dtype)
        return torch.ones_like(a)

    def forward(self, xs: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """xs: (T, batch, I) → (ys (T, batch, O), h_T)."""
        h = xs.new_zeros(xs.shape[1], self.hidden_size) if h0 is None else h0
        ys = []
        for x in xs:
            h, _ = self.cell(x, h)
            ys.append(self.readout(h))
        return torch.stack(ys), h

    def theta_grad_to_params(self, grad: torch.Tensor) -> None:
        """Adds an (H, I + H + 1) gradient into .grad of weight_ih, weight_hh, bias."""
        i, h = self.input_size, self.hidden_size
        g_hh = grad[:, i:i + h]
        if self.recurrent_mask is not None:
            g_hh = g_hh * self.recurrent_mask
        for p, g in ((self.weight_ih, grad[:, :i]), (self.weight_hh, g_hh), (self.bias, grad[:, i + h])):
            # Rounded to p's dtype before the sum, as always: adding a wider g
            # rounds once, after it, and resumed runs compare bit-exactly. Only
            # a cast is fresh; an uncast g may be a view into `grad`.
            cast = g.to(p.dtype)
            add_to_grad(p, cast, owned=cast is not g)
