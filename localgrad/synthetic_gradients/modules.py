"""The synthetic-gradient module M_k of one interface: a linear map or a
small MLP from the interface's activation h_k (flattened, with the one-hot
label for cDNI) to a prediction of ∂ℓ/∂h_k of h_k's shape. Its output layer
starts at zero, as in Jaderberg et al. 2017: the blocks below first see no
gradient rather than a random one."""

from __future__ import annotations

import math

import torch
from torch import nn


class SyntheticGradient(nn.Module):
    """M(h[, c]) -> ĝ, ĝ of h's shape.

    shape: the interface's shape without the batch dimension; n_condition:
    width of the conditioning input c (0: none, DNI; the class count or the
    target width: cDNI); hidden: widths of hidden ReLU layers (() = linear)."""

    def __init__(self, shape: tuple[int, ...], n_condition: int = 0, hidden: tuple[int, ...] = (),
                 dtype: torch.dtype | None = None, device=None):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.n_condition = int(n_condition)
        width = math.prod(self.shape)
        sizes = [width + self.n_condition, *hidden, width]
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(n_in, n_out, dtype=dtype, device=device))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        with torch.no_grad():
            layers[-1].weight.zero_()
            layers[-1].bias.zero_()
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        flat = h.reshape(h.shape[0], math.prod(self.shape))  # explicit width: a batch of 0 works
        if self.n_condition:
            flat = torch.cat([flat, condition.to(flat.dtype)], dim=1)
        return self.net(flat).reshape(h.shape)
