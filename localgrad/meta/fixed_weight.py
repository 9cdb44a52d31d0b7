"""Fixed-weight learning (Hochreiter, Younger & Conwell 2001, "Learning to
learn using gradient descent", ICANN): an LSTM is meta-trained by BPTT on a
family of tasks; at step t it sees the input x_t and the previous target
y_{t-1}, and predicts y_t. Once its weights are frozen it still learns a new
task within an episode, in its activations: its error falls with t.

The task family here is random linear regression (as in Hochreiter et al.'s
linear-function experiments): y = w^T x + noise, w ~ N(0, I / dim) per task,
x ~ N(0, I)."""

from __future__ import annotations

import torch
from torch import nn

from localgrad._checks import as_float, as_int


def linear_regression_tasks(n_tasks: int, steps: int, dim: int, generator: torch.Generator | None = None,
                            noise: float = 0.0, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """n_tasks episodes of `steps` samples: x (n_tasks, steps, dim), y
    (n_tasks, steps, 1), one random weight vector per episode."""
    op = "linear_regression_tasks"
    n_tasks = as_int(n_tasks, op, "n_tasks", minimum=0)
    steps = as_int(steps, op, "steps", minimum=1)
    dim = as_int(dim, op, "dim", minimum=1)
    noise = as_float(noise, op, "noise", nonnegative=True)
    w = torch.randn(n_tasks, dim, 1, generator=generator, dtype=torch.float64) / dim**0.5
    x = torch.randn(n_tasks, steps, dim, generator=generator, dtype=torch.float64)
    y = x @ w + noise * torch.randn(n_tasks, steps, 1, generator=generator, dtype=torch.float64)
    return x.to(dtype), y.to(dtype)


class FixedWeightLearner(nn.Module):
    """LSTM(dim + n_out -> hidden) and a linear readout. forward(x, y):
    x (batch, T, dim), y (batch, T, n_out) -> predictions (batch, T, n_out),
    prediction t made from x_0..x_t and y_0..y_{t-1} only."""

    def __init__(self, dim: int, n_out: int = 1, hidden: int = 64, layers: int = 1):
        super().__init__()
        self.dim = as_int(dim, "FixedWeightLearner", "dim", minimum=1)
        self.n_out = as_int(n_out, "FixedWeightLearner", "n_out", minimum=1)
        hidden = as_int(hidden, "FixedWeightLearner", "hidden", minimum=1)
        layers = as_int(layers, "FixedWeightLearner", "layers", minimum=1)
        self.lstm = nn.LSTM(self.dim + self.n_out, hidden, num_layers=layers, batch_first=True)
        self.readout = nn.Linear(hidden, self.n_out)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"FixedWeightLearner: x must be (batch, T, {self.dim}), got shape {tuple(x.shape)}")
        if y.shape != (*x.shape[:2], self.n_out):
            raise ValueError(f"FixedWeightLearner: y must have shape {(*x.shape[:2], self.n_out)}, "
                             f"got {tuple(y.shape)}")
        previous = torch.cat([torch.zeros_like(y[:, :1]), y[:, :-1]], 1)  # y_{t-1}; nothing before step 0
        h, _ = self.lstm(torch.cat([x, previous], -1))
        return self.readout(h)

    def step_losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The squared error at each step of the episode, averaged over the batch: (T,)."""
        return ((self(x, y) - y) ** 2).sum(-1).mean(0)

    def freeze(self) -> "FixedWeightLearner":
        """No weight changes any more: what it learns of a new task, it learns in its activations."""
        self.requires_grad_(False)
        return self
