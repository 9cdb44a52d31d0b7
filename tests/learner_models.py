"""Small models for the tests that iterate over localgrad.rules(): one per
kind of input, and the data for them."""

from __future__ import annotations

import torch
from torch import nn

from localgrad import online

N_OUT = 4
STEPS = 5  # time steps of a test sequence
# Static rules whose learner refuses the stock MLP, with the module it names.
REFUSE_MLP = {"gait": "layer 2"}


def stock_mlp(seed: int = 0, dtype=torch.float64) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 9), nn.Tanh(), nn.Linear(9, N_OUT)).to(dtype)


def square_mlp(seed: int = 0, dtype=torch.float64) -> nn.Sequential:
    """GAIT-prop's kind of net: layers after the first square, invertible activations."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 6), nn.LeakyReLU(0.1), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 6)).to(dtype)


def model_for(rule: str, seed: int = 0, dtype=torch.float64) -> nn.Module:
    """A model `rule` trains: the stock MLP, GAIT's square net, a leaky RNN or a LIF network."""
    import localgrad

    if localgrad.rule_info(rule).inputs == "static":
        return square_mlp(seed, dtype) if rule in REFUSE_MLP else stock_mlp(seed, dtype)
    torch.manual_seed(seed)
    if rule.endswith("-spiking"):
        return online.LIF(3, 6, N_OUT, tau_m=5.0, weight_scale=2.0, dtype=dtype)
    return online.LeakyRNN(3, 5, N_OUT, alpha=0.6).to(dtype)


def batch_for(rule: str, batch: int, step: int = 0, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    import localgrad

    g = torch.Generator().manual_seed(1000 + step)
    n_out = 6 if rule in REFUSE_MLP else N_OUT
    if localgrad.rule_info(rule).inputs == "static":
        x = torch.randn(batch, 12, generator=g, dtype=dtype)
    else:
        x = torch.randn(batch, STEPS, 3, generator=g, dtype=dtype)
        if rule.endswith("-spiking"):
            x = (x > 0.5).to(dtype)
    return x, torch.randint(0, n_out, (batch,), generator=g)
