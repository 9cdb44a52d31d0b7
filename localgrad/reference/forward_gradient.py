"""Forward gradients: gradient estimates from directional derivatives alone
(one forward-mode pass per tangent, no backward pass).

Weight perturbation (Baydin, Pearlmutter, Syme, Wood & Torr 2022,
"Gradients without Backpropagation", arXiv:2202.08587, eq. 1-2): for a loss
f(theta) and a tangent v ~ N(0, I) over all trainable parameters,

    g(theta) = (grad f(theta) . v) v,     E[g] = E[v v^T] grad f = grad f,

the "forward gradient". The directional derivative grad f . v is one jvp.
The mean over K independent tangents is unbiased with variance falling as
1/K (its error as 1/sqrt(K)); the variance grows with the number of
perturbed coordinates.

Activity perturbation (Ren, Kornblith, Liao & Hinton 2023, "Scaling
Forward Gradient with Local Losses", ICLR, sec. 3): perturb the
pre-activations z_l = W_l h_{l-1} + b_l of every sample n instead of the
weights, u_{l,n} ~ N(0, I), and estimate

    d_n = sum_l dL_n/dz_{l,n} . u_{l,n}        (one jvp for all layers)
    dL/dW_l ~ 1/B sum_n d_n u_{l,n} h_{l-1,n}^T,   dL/db_l ~ 1/B sum_n d_n u_{l,n},

unbiased since the u are independent with identity covariance; the
perturbed space (the units) is far smaller than the weights', hence a
smaller variance (Ren et al., sec. 3).

Local losses (Ren et al. sec. 4, the "local greedy" losses): each hidden
block l (a Linear and its activation) gets a linear head A_l and its own
loss L_l = loss(A_l h_l, y); the block's input is a constant for L_l
(stop-gradient), so d_n and the estimate above use dL_{l,n}/dz_{l,n} only,
and the blocks learn in parallel. The last block's loss is the model's own.
The heads learn by their exact gradient e_l^T h_l / B (e_l = dL_l/d(A_l h_l)
per sample), which needs no pass through the network.

Ren et al.'s LocalMixer architecture, its patch- and group-wise losses and
its stop-gradient inside blocks are not reproduced: here a block is one
Linear layer of a stock MLP.

Shapes: grads[i] like params[i]; tangents[k][i] like params[i];
grad_z[l]: (batch, n_l) per-sample dL_n/dz_l; inputs[l]: (batch, n_{l-1});
activity tangents[k][l]: (batch, n_l).
"""

from __future__ import annotations

import torch


def weight_estimate(grads: list[torch.Tensor], tangents: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """Baydin et al.'s forward gradient from the true gradient and K
    tangents: mean_k (sum_i grads[i] . v_k[i]) v_k."""
    out = [torch.zeros_like(g) for g in grads]
    for v in tangents:
        directional = sum((g * t).sum() for g, t in zip(grads, v))
        for o, t in zip(out, v):
            o.add_(directional * t / len(tangents))
    return out


def activity_estimate(grad_z: list[torch.Tensor], inputs: list[torch.Tensor],
                      tangents: list[list[torch.Tensor]], local: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Ren et al.'s activity-perturbed estimate of each Linear layer's
    batch-mean (weight, bias) gradient, averaged over K tangents. local:
    grad_z[l] is block l's own loss's (the directional derivative of layer
    l sums over layer l only) instead of the one loss's (all layers)."""
    batch = inputs[0].shape[0]
    out = [(torch.zeros(g.shape[1], x.shape[1], dtype=g.dtype), torch.zeros(g.shape[1], dtype=g.dtype))
           for g, x in zip(grad_z, inputs)]
    for u in tangents:
        per_layer = [(g * t).sum(1) for g, t in zip(grad_z, u)]  # (batch,) each
        total = sum(per_layer)
        for l, (x, t) in enumerate(zip(inputs, u)):
            d = per_layer[l] if local else total
            dz = d[:, None] * t
            out[l][0].add_(dz.T @ x / (batch * len(tangents)))
            out[l][1].add_(dz.sum(0) / (batch * len(tangents)))
    return out
