"""The forward-gradient estimators by forward-mode AD (torch.func.jvp): one
forward pass carries each tangent, no graph is kept and nothing runs
backward. Maths, papers and equations: localgrad/reference/forward_gradient.py.

Every estimator takes its tangents already drawn (the learner draws them
from its seeded counter) and returns batch-mean estimates, unscaled."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call, jvp

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
                        tangents: list[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(batch-mean loss, {name: mean_k (grad L . v_k) v_k}) over the
    parameters in `params` (the others stay constants)."""

    def f(p):
        return per_sample_loss(functional_call(model, p, (x,)), y, loss).mean()

    estimate = {n: torch.zeros_like(p) for n, p in params.items()}
    value = None
    for v in tangents:
        value, directional = jvp(f, (params,), (v,))
        for n, t in v.items():
            estimate[n].add_(directional * t, alpha=1.0 / len(tangents))
    return value, estimate


def _run_block(block: Block, h: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    return block.after(block.linear(h) + delta)


def activity_perturbation(blocks: Blocks, x, y, loss: str, tangents: list[list[torch.Tensor]]):
    """One loss for the whole net, every layer's pre-activation perturbed in
    one jvp per tangent. Returns (batch-mean loss, output, [(dW, db)] per
    Linear)."""
    h0 = blocks.before(x)

    def f(*deltas):
        h, inputs = h0, []
        for block, delta in zip(blocks.blocks, deltas):
            inputs.append(h)
            h = _run_block(block, h, delta)
        return per_sample_loss(h, y, loss), (h, inputs)

    zeros = [torch.zeros_like(u) for u in tangents[0]]
    sums = [None] * len(blocks)
    for u in tangents:
        losses, directional, (out, inputs) = jvp(f, tuple(zeros), tuple(u), has_aux=True)
        for l, (h, t) in enumerate(zip(inputs, u)):
            dz = directional[:, None] * t
            sums[l] = _accumulate(sums[l], dz, h)
    return losses.mean(), out, _means(sums, x.shape[0] * len(tangents))


def local_perturbation(blocks: Blocks, heads, x, y, loss: str, tangents: list[list[torch.Tensor]]):
    """Ren et al.'s local greedy losses: block l's pre-activation perturbed
    against its own head's loss (the last block: the model's loss), its
    input a constant. Returns (the model's batch-mean loss, output,
    [(dW, db)] per Linear, [(dA, da)] per head: exact)."""
    h = blocks.before(x)
    sums, head_grads, losses = [None] * len(blocks), [], None
    batch = x.shape[0]
    for l, block in enumerate(blocks.blocks):
        head = heads[l] if l < len(heads) else None

        def f(delta, h_in=h, block=block, head=head):
            h_out = _run_block(block, h_in, delta)
            out = h_out if head is None else head(h_out)
            return per_sample_loss(out, y, loss), (h_out, out)

        zero = torch.zeros(batch, block.linear.out_features, dtype=h.dtype, device=h.device)
        for u in tangents:
            losses, directional, (h_out, out) = jvp(f, (zero,), (u[l],), has_aux=True)
            sums[l] = _accumulate(sums[l], directional[:, None] * u[l], h)
        if head is not None:
            e = output_error(out, y, loss)
            head_grads.append((e.T @ h_out / batch, e.mean(0)))
        h = h_out
    return losses.mean(), out, _means(sums, batch * len(tangents)), head_grads


def _accumulate(acc, dz, h):
    term = (dz.T @ h, dz.sum(0))
    return term if acc is None else (acc[0] + term[0], acc[1] + term[1])


def _means(sums, count):
    return [(w / count, b / count) for w, b in sums]
