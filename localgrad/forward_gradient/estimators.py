"""The forward-gradient estimators by forward-mode AD (torch.func.jvp): one
forward pass carries each tangent, no graph is kept and nothing runs
backward. Maths, papers and equations: localgrad/reference/forward_gradient.py.

Every estimator takes its tangents already drawn (the learner draws them
from its seeded counter) and returns batch-mean estimates, unscaled."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call, jvp, vmap

from localgrad.mlp_blocks import Block, Blocks


def per_sample_loss(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """(batch,) losses: "ce" on class indices or class probabilities, "mse"
    1/2 ||out - y||^2 (class indices as one-hot rows). y already checked."""
    if loss == "ce":
        return F.cross_entropy(out, y if y.is_floating_point() else y.long(), reduction="none")
    target = y if y.is_floating_point() else F.one_hot(y.long(), out.shape[1]).to(out)
    return 0.5 * (out - target).pow(2).sum(1)


def output_error(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """(batch, n_out): per-sample dL_n/d out, in closed form (a head's exact
    gradient needs no autograd)."""
    target = y if y.is_floating_point() else F.one_hot(y.long(), out.shape[1]).to(out)
    if loss == "ce":
        return torch.softmax(out, 1) - target
    return out - target


def weight_perturbation(model, params: dict[str, torch.Tensor], x, y, loss: str,
                        tangents: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(batch-mean loss, {name: mean_k (grad L . v_k) v_k}) over the
    parameters in `params` (the others stay constants); tangents[name]:
    (K, *param.shape), the K jvps vectorised by vmap."""

    def f(p):
        return per_sample_loss(functional_call(model, p, (x,)), y, loss).mean()

    value, directional = _over_tangents(lambda v: jvp(f, (params,), (v,)), (tangents,), (0, 0))
    k = directional.shape[0]
    estimate = {n: torch.tensordot(directional, v, dims=1) / k for n, v in tangents.items()}
    return value[0], estimate


def _run_block(block: Block, h: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    return block.after(block.linear(h) + delta)


def activity_perturbation(blocks: Blocks, x, y, loss: str, tangents: list[torch.Tensor]):
    """One loss for the whole net, every layer's pre-activation perturbed in
    one jvp per tangent; tangents[l]: (K, batch, n_l). Returns (batch-mean
    loss, output, [(dW, db)] per Linear)."""
    h0 = blocks.before(x)

    def f(*deltas):
        h, inputs = h0, []
        for block, delta in zip(blocks.blocks, deltas):
            inputs.append(h)
            h = _run_block(block, h, delta)
        return per_sample_loss(h, y, loss), (h, inputs)

    zeros = tuple(torch.zeros_like(u[0]) for u in tangents)
    # The primal outputs do not depend on the tangent: vmap returns them unbatched (out_dims None).
    losses, directional, (out, inputs) = _over_tangents(lambda *u: jvp(f, zeros, u, has_aux=True), tangents,
                                                        (None, 0, None))
    grads = [_layer_estimate(directional, u, h) for u, h in zip(tangents, inputs)]
    return losses.mean(), out, grads


def local_perturbation(blocks: Blocks, heads, x, y, loss: str, tangents: list[torch.Tensor]):
    """Ren et al.'s local greedy losses: block l's pre-activation perturbed
    against its own head's loss (the last block: the model's loss), its
    input a constant. Returns (the model's batch-mean loss, output,
    [(dW, db)] per Linear, [(dA, da)] per head: exact)."""
    h = blocks.before(x)
    grads, head_grads = [], []
    for l, block in enumerate(blocks.blocks):
        head = heads[l] if l < len(heads) else None

        def f(delta, h_in=h, block=block, head=head):
            h_out = _run_block(block, h_in, delta)
            out = h_out if head is None else head(h_out)
            return per_sample_loss(out, y, loss), (h_out, out)

        zero = torch.zeros_like(tangents[l][0])
        losses, directional, (h_out, out) = _over_tangents(lambda u: jvp(f, (zero,), (u,), has_aux=True),
                                                           (tangents[l],), (None, 0, None))
        grads.append(_layer_estimate(directional, tangents[l], h))
        if head is not None:
            e = output_error(out, y, loss)
            head_grads.append((e.T @ h_out / x.shape[0], e.mean(0)))
        h = h_out
    return losses.mean(), out, grads, head_grads


def _over_tangents(fn, tangents, out_dims):
    """fn over the K tangents stacked along dim 0: vmap for K > 1; for K = 1
    a plain call (vmap's batching rules cost more than the one jvp: 150 vs
    58 ms a step on the benchmark's 784-1024-1024-10 MLP, one CPU thread).
    Outputs with out_dims 0 come back with the K dimension either way."""
    leaves = torch.utils._pytree.tree_leaves(tangents)
    if leaves and leaves[0].shape[0] == 1:
        one = torch.utils._pytree.tree_map(lambda t: t[0], tangents)
        result = fn(*one)
        return tuple(r.unsqueeze(0) if d == 0 else r for r, d in zip(result, out_dims))
    return vmap(fn, out_dims=out_dims)(*tangents)


def _layer_estimate(directional: torch.Tensor, u: torch.Tensor, h: torch.Tensor):
    """directional: (K, batch), u: (K, batch, n), h: (batch, n_in) -> the
    batch- and tangent-mean (dW, db)."""
    dz = (directional[..., None] * u).sum(0) / (u.shape[0] * u.shape[1])
    return dz.T @ h, dz.sum(0)
