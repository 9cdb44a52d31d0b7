"""Synthetic gradients (decoupled neural interfaces), reference implementation.

Jaderberg, Czarnecki, Osindero, Vinyals, Graves, Silver & Kavukcuoglu,
"Decoupled Neural Interfaces using Synthetic Gradients", ICML 2017, sec. 2
(synthetic gradients; cDNI, the module conditioned on the label) and
Supplementary A, "Unified View of Synthetic Gradients" (BP(0), BP(λ));
Czarnecki, Świrszcz, Jaderberg, Osindero, Vinyals & Kavukcuoglu,
"Understanding Synthetic Gradients and Decoupled Neural Interfaces", ICML
2017 (the SG module trained by regression; linear SG modules, and why
conditioning on the label lets them represent the true gradient of a
linear top layer under the squared error).

A feed-forward net is cut into blocks f_1 .. f_K:

    h_0 = x,  h_k = f_k(h_{k-1}; θ_k),  loss ℓ(h_K, y)  (per sample; the
    update is the batch mean, as backprop's of the mean loss)

At every interface k = 1 .. K-1 a synthetic-gradient module predicts the
per-sample gradient of the loss with respect to h_k from local information:

    ĝ_k = M_k(h_k)               (DNI)
    ĝ_k = M_k(h_k, onehot(y))    (cDNI; a float target y itself for mse)

BP(λ) (Jaderberg 2017, Supplementary A): the signal each block learns
from is a mixture, backpropagated one block at a time,

    z_K = ∂ℓ/∂h_K                                    (the true output gradient)
    t_k = z_{k+1} ∂h_{k+1}/∂h_k                      (the target of M_k, k < K)
    z_k = λ t_k + (1 − λ) ĝ_k

and the updates are

    Δθ_k ∝ −z_k ∂h_k/∂θ_k   (a vector-Jacobian product of block k alone)
    ΔM_k ∝ −∂/∂φ_k ½‖ĝ_k − t_k‖²   (regression; t_k held fixed)

λ = 0 is BP(0), the paper's DNI: each block learns from its own synthetic
gradient only and M_k regresses onto M_{k+1}'s prediction backpropagated
through block k+1 (bootstrapping, as TD(0); M_{K-1}'s target is the true
gradient). λ = 1 makes every z_k the true gradient: plain backprop.

Recurrent nets (Jaderberg 2017, sec. 2.1): truncated BPTT over windows
of T steps, h_τ the state where a window starts. The window's gradient is
that of

    Σ_{t=τ+1}^{τ+T} L_t + ĝ_{τ+T} · h_{τ+T},   ĝ_{τ+T} = M(h_{τ+T}) ≈ ∂(Σ_{t>τ+T} L_t)/∂h_{τ+T}

(ĝ held fixed), and M regresses at h_τ onto the bootstrapped target
δ_τ = ∂(the same sum)/∂h_τ: the true gradient inside the window, M's own
prediction beyond it. With the exact future gradient in place of ĝ, the
windows' gradients sum to full BPTT's.

Shapes: h_k (batch, ...) of any shape; ĝ_k, t_k, z_k like h_k. Blocks are
callables with their parameters inside; `synthetic[k-1]` maps h_k (detached)
to ĝ_k.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def bp_lambda(
    blocks: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    params: Sequence[Sequence[torch.Tensor]],
    x: torch.Tensor,
    output_grad: Callable[[torch.Tensor], torch.Tensor],
    synthetic: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    lam: float,
) -> dict:
    """BP(λ) for one batch, written as the equations above.

    blocks: f_1 .. f_K; params[k]: the parameters of block k+1 (θ_{k+1});
    x: h_0 (batch, ...); output_grad(h_K) -> per-sample ∂ℓ/∂h_K;
    `synthetic[k](h_{k+1})` -> ĝ_{k+1} for the K-1 interfaces; lam: λ.

    Returns a dict: "h" [h_1 .. h_K], "synthetic" [ĝ_1 .. ĝ_{K-1}],
    "targets" [t_1 .. t_{K-1}], "mixed" [z_1 .. z_K], "updates" (per block,
    the batch mean of z_k ∂h_k/∂θ_k: what `.grad` of θ_k holds).
    """
    K = len(blocks)
    if len(synthetic) != K - 1 or len(params) != K:
        raise ValueError("bp_lambda: need K blocks, K parameter lists and K - 1 synthetic-gradient modules")
    batch = x.shape[0]
    hs = [x.detach()]
    for f in blocks:
        with torch.no_grad():
            hs.append(f(hs[-1]))
    sgs = [synthetic[k](hs[k + 1]).detach() for k in range(K - 1)]
    z = [None] * (K + 1)  # z[k] for k = 1..K
    t = [None] * K  # t[k] for k = 1..K-1
    z[K] = output_grad(hs[K]).detach()
    for k in range(K - 1, 0, -1):
        # t_k = z_{k+1} ∂h_{k+1}/∂h_k: the vjp of block k+1 at h_k
        _, (t[k],) = torch.autograd.functional.vjp(lambda h: blocks[k](h), (hs[k],), z[k + 1])
        z[k] = lam * t[k] + (1.0 - lam) * sgs[k - 1]
    updates = []
    for k in range(1, K + 1):
        with torch.enable_grad():
            out = blocks[k - 1](hs[k - 1])
            grads = torch.autograd.grad(out, list(params[k - 1]), z[k], allow_unused=True)
        updates.append([torch.zeros_like(p) if g is None else g / max(batch, 1)
                        for p, g in zip(params[k - 1], grads)])
    return {"h": hs[1:], "synthetic": sgs, "targets": t[1:], "mixed": z[1:], "updates": updates}


def regression_loss(synthetic: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The SG module's loss: ½‖ĝ − t‖² summed over features, mean over the
    batch (0 for an empty batch); t is held fixed."""
    return 0.5 * (synthetic - target.detach()).pow(2).sum() / max(synthetic.shape[0], 1)


def exact_linear_output_sg(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear cDNI that gives the exact gradient at the input h of a top
    layer ŷ = W h + b under ℓ = ½‖ŷ − y‖² (Czarnecki 2017, sec. 3):

        ∂ℓ/∂h = Wᵀ(W h + b − y) = [WᵀW | −Wᵀ] [h; y] + Wᵀb

    weight: (n_out, n_h); bias: (n_out,). Returns (A, c) with A: (n_h,
    n_h + n_out) acting on [h; y] and c: (n_h,), so ĝ = [h; y] Aᵀ + c."""
    return torch.cat([weight.T @ weight, -weight.T], dim=1), weight.T @ bias


def fit_linear_sg(inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares linear SG (A, c) with ĝ = inputs Aᵀ + c, by lstsq on
    [inputs | 1]: inputs (batch, n_in), targets (batch, n_h). The minimum-norm
    solution when the columns are dependent (a one-hot label sums to the
    constant column)."""
    design = torch.cat([inputs, inputs.new_ones(inputs.shape[0], 1)], dim=1)
    solution = torch.linalg.lstsq(design, targets, driver="gelsd" if inputs.device.type == "cpu" else None).solution
    return solution[:-1].T, solution[-1]
