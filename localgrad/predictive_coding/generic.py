"""Predictive coding for nn.Sequential models with Conv2d layers (and
pooling, or any parameter-free module between the layers): the same maths as
localgrad.reference.predictive_coding, with each block's Jacobian applied by
autograd (a vector-Jacobian product per block and step) instead of the fused
MLP op.

A block is a parametric layer (Linear or Conv2d) with the parameter-free
modules in front of it: mu_l = block_l(a_{l-1}) (ReLU, pooling, Flatten of
a_{l-1}, then the layer). The state step is a_k += gamma * (-eps_k +
J_{k+1}(a_k)^T eps_{k+1}), where J_{k+1}^T eps is the block's vjp (for an
MLP block, f'(a_k) * W^T eps), and the update of block l is minus the vjp of
its parameters with cotangent eps_l / N. IL, FPA (Jacobians and predictions at
the feed-forward values), Z-IL (the wave schedule) and iPC (the parameters
also move at every step) run here. An IL or iPC step is one forward pass of
every block (the errors) and one backward pass from it (every state's vjp,
and for iPC every parameter's), as the reference's step order requires:
errors, then states and parameters moved from the same errors.
"""

from __future__ import annotations

import torch
from localgrad.learner import UnsupportedModelError
from torch import nn

PARAMETRIC = (nn.Linear, nn.Conv2d)


class Block(nn.Module):
    def __init__(self, pre: list[nn.Module], layer: nn.Module):
        super().__init__()
        self.pre = nn.Sequential(*pre)
        self.layer = layer

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.layer(self.pre(a))


def parse_blocks(model: nn.Sequential) -> list[Block] | None:
    """The model's blocks, or None when it has no Conv2d (MLPs take the
    fused path and its checks)."""
    if not any(isinstance(m, nn.Conv2d) for m in model):
        return None
    blocks, pending = [], []
    for i, m in enumerate(model):
        if isinstance(m, PARAMETRIC):
            blocks.append(Block(pending, m))
            pending = []
            continue
        if any(True for _ in m.parameters()):
            raise UnsupportedModelError(f"PredictiveCoding: model[{i}] ({type(m).__name__}) has parameters; predictive "
                             "coding takes Linear and Conv2d layers")
        if isinstance(m, nn.Dropout) and m.p > 0:
            raise UnsupportedModelError(f"PredictiveCoding: model[{i}] is Dropout(p={m.p}); inference needs a deterministic model")
        pending.append(m)
    if pending or not isinstance(blocks[-1].layer, nn.Linear):
        raise UnsupportedModelError("PredictiveCoding: the model must end with a Linear layer (its output is the prediction "
                         "mu_L, (batch, classes))")
    return blocks


def _vjp_input(block: Block, a: torch.Tensor, cotangent: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():
        a = a.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(block(a), a, cotangent)
    return grad


def _trainable(blocks: list[Block]) -> list[torch.Tensor]:
    # Frozen parameters (requires_grad=False) get no update and, for iPC, do not move.
    return [p for b in blocks for p in b.layer.parameters() if p.requires_grad]


def _per_block(blocks: list[Block], grads) -> list[list[torch.Tensor | None]]:
    """`grads`, one per trainable parameter in order, as one list per block
    with None at each frozen parameter."""
    grads = iter(grads)
    return [[next(grads) if p.requires_grad else None for p in b.layer.parameters()] for b in blocks]


def _vjp_params(block: Block, a: torch.Tensor, cotangent: torch.Tensor) -> list[torch.Tensor | None]:
    params = _trainable([block])
    if not params:
        return _per_block([block], [])[0]
    with torch.enable_grad():
        return _per_block([block], torch.autograd.grad(block(a.detach()), params, cotangent))[0]


def _graph_step(blocks: list[Block], a: list[torch.Tensor], output_error, params: list[torch.Tensor]):
    """At the states `a`: the errors of every layer and, in one backward
    pass, each hidden state's J^T eps from the block above plus the vjp of
    `params` (the blocks' parameters, or none) with cotangents eps."""
    L = len(blocks)
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_(True) for t in a[1:]]
        inputs = [a[0], *leaves]
        mus = [blocks[l](inputs[l]) for l in range(L)]
        eps = [(a[k] - mus[k - 1]).detach() for k in range(1, L)] + [output_error(mus[-1].detach())]
        # Block 0's prediction reaches no state: it joins only for its parameters.
        first = 0 if params else 1
        grads = torch.autograd.grad(mus[first:], leaves + params, eps[first:], allow_unused=True)
    backs = [torch.zeros_like(t) if g is None else g for t, g in zip(leaves, grads[:len(leaves)])]
    return eps, backs, list(grads[len(leaves):])


@torch.no_grad()
def infer_and_update(blocks: list[Block], x: torch.Tensor, output_error, variant: str, steps: int,
                     gamma: float, ipc_lr: float = 0.0) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
    """Runs inference from the feed-forward values; returns (mu_L, the
    update -dF/dtheta of every block's parameters, batch-summed). For iPC
    (`ipc_lr`: the step per batch-summed update) the parameters move in place
    at every step and the update returned is their total move / ipc_lr."""
    L = len(blocks)
    a = [x]
    for b in blocks:
        a.append(b(a[-1]))
    mu_out = a[-1]
    ff = list(a)
    eps: list[torch.Tensor | None] = [None] * L
    if variant == "zil":
        eps[L - 1] = output_error(mu_out)
        n = min(steps, L - 1)
        for t in range(n):
            k = L - 1 - t
            mu = blocks[k - 1](a[k - 1])
            e = a[k] - mu
            a[k] = a[k] + gamma * (-e + _vjp_input(blocks[k], a[k], eps[k]))
            eps[k - 1] = a[k] - mu
        for k in range(1, L - n):
            eps[k - 1] = a[k] - blocks[k - 1](a[k - 1])
        pre = ff
    elif variant == "fpa":
        mu = ff[1:]
        eps = [a[k] - mu[k - 1] for k in range(1, L)] + [output_error(mu_out)]
        for _ in range(steps):
            backs = [_vjp_input(blocks[k], ff[k], eps[k]) for k in range(1, L)]
            for k in range(1, L):
                a[k] = a[k] + gamma * (-eps[k - 1] + backs[k - 1])
            eps = [a[k] - mu[k - 1] for k in range(1, L)] + [eps[L - 1]]
        pre = ff
    else:
        ipc = variant == "ipc"
        params = _trainable(blocks) if ipc else []
        start = [p.detach().clone() for p in params]
        for _ in range(steps):
            eps, backs, moves = _graph_step(blocks, a, output_error, params)
            for k in range(1, L):
                a[k] = a[k] + gamma * (-eps[k - 1] + backs[k - 1])
            for p, m in zip(params, moves):
                p.add_(m, alpha=ipc_lr)
        if ipc:
            moved = [(p - p0).div_(ipc_lr) for p, p0 in zip(params, start)]
            for p, p0 in zip(params, start):
                p.copy_(p0)  # the learner writes the move into .grad; the optimizer applies it
            return mu_out, _per_block(blocks, moved)
        # The final errors and every block's update from one more pass.
        params = _trainable(blocks)
        _, _, grads = _graph_step(blocks, a, output_error, params)
        return mu_out, _per_block(blocks, [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)])
    updates = [_vjp_params(blocks[l], pre[l], eps[l]) for l in range(L)]
    return mu_out, updates
