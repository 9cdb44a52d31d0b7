"""Target propagation, reference implementation (Python only; no fused op).

Papers and equations:
  - TP: Bengio, "How Auto-Encoders Could Provide Credit Assignment in Deep
    Networks via Target Propagation", arXiv:1407.7906, 2014, sec. 2-3;
    Lee, Zhang, Fischer & Bengio, "Difference Target Propagation", ECML-PKDD
    2015 (arXiv:1412.7525), eq. (6)-(8) (targets through learned inverses).
  - DTP: Lee et al. 2015, eq. (11)-(13): the difference correction and the
    noisy reconstruction loss of the feedback.
  - DRL / DDTP-linear: Meulemans, Carzaniga, Suykens, Sacramento & Grewe, "A
    Theoretical Framework for Target Propagation", NeurIPS 2020, eq. (10)
    (difference target), eq. (13) (difference reconstruction loss with its
    regulariser lambda) and sec. 4 (direct linear feedback from the output).
  - L-DRL: Ernoult, Normandin, Moudgil, Spinney, Belilovsky, Rish, Richards
    & Bengio, "Towards Scaling Difference Target Propagation by Learning
    Backprop Targets", ICML 2022, eq. (9)-(10) (local difference
    reconstruction loss; its minimiser satisfies the Jacobian matching
    condition J_G = J_F^T, their Theorem 4.2).
  - GAIT-prop: Ahmad, van Gerven & Ambrogioni, "GAIT-prop: A Biologically
    Plausible Learning Rule Derived from Backpropagation of Error", NeurIPS
    2020, eq. (7)-(9): invertible square layers and incremental targets.
(The equation numbers are those of the arXiv versions as we recall them,
not re-checked against the papers here; the formulas below are what the
code computes and what the tests check.)

The network (an nn.Sequential MLP): h_0 = x, for l = 1..L

    a_l = W_l h_{l-1} + b_l,   h_l = f_l(h_{l-1}) = s_l(a_l)

W_l: (n_l, n_{l-1}) as nn.Linear, s_l the activation after Linear l
(`kinds[l-1]`, codes of localgrad.activations; identity when none), h_l:
(batch, n_l). loss(h_L, y) per sample: "ce" (cross-entropy of the logits
h_L) or "mse" (1/2 ||h_L - y||^2). Output target, every variant:

    t_L = h_L - beta dloss/dh_L                                   (batch, n_L)

Hidden targets t_l, l = L-1 .. 1 (`targets`):

    tp    t_{l-1} = g_l(t_l)
    dtp   t_{l-1} = h_{l-1} + g_l(t_l) - g_l(h_l)
    ldrl  as dtp (the feedback is trained by another loss)
    ddtp  t_l = h_l + Q_l (t_L - h_L)                 (direct, linear: Q_l (n_l, n_L))
    gait  t_{l-1} = f_l^{-1}((1 - gamma f_l'^2) h_l + gamma f_l'^2 t_l)
          f_l^{-1}(h) = W_l^{-1}(s_l^{-1}(h) - b_l), f_l' = s_l'(a_l)

with layer-wise feedback g_l(h) = s_{l-1}(V_l h + c_l) (V_l: (n_{l-1}, n_l),
the activation of the layer g_l reconstructs), the papers' form, or (ours,
`feedback="gated"`) g_l(h) = V_l (s_l'(a_l) * h) + c_l: linear in h, gated
by layer l's own derivative at the forward pass, so that its Jacobian
V_l diag(s_l') can equal J_f^T = W_l^T diag(s_l') exactly (the Jacobian
matching condition) and L-DRL's minimiser is V_l = W_l^T for every
activation (to first order in the noise, E[grad_V] = 2 noise^2 (V - W^T)
E[diag(s_l'^2)]). Forward learning, every variant: layer l descends 1/2 ||f_l(h_{l-1}) - t_l||^2 with h_{l-1} and t_l
held fixed (Lee 2015 eq. 8); `forward_gradients` returns that gradient
divided by the size of the output nudge that reached layer l (beta; for
GAIT beta gamma^(L-l), since each inverse step scales the target difference
by gamma; Ahmad et al. absorb it in per-layer rates), so that with exact
feedback it is backprop's gradient:

    dW_l = -(1/scale_l) mean_n (s_l'(a_l) * (t_l - h_l)) h_{l-1}^T,
    db_l = -(1/scale_l) mean_n  s_l'(a_l) * (t_l - h_l).

Feedback losses per sample (`feedback_losses`; eps ~ N(0, noise^2) in the
layer's input space, eta ~ N(0, noise^2) in its output space, f_l held
fixed):

    tp, dtp  ||g_l(f_l(h_{l-1} + eps)) - (h_{l-1} + eps)||^2             (Lee eq. 13)
    ldrl     -2 eps . (g_l(f_l(h_{l-1} + eps)) - g_l(h_l))
             + ||g_l(h_l + eta) - g_l(h_l)||^2                         (Ernoult eq. 10)
    ddtp     ||Q_l (F_l(h_l + eps) - h_L) - eps||^2 + lam ||Q_l eta||^2  (Meulemans eq. 13)

F_l = f_L o ... o f_{l+1}. For linear layers the expected L-DRL loss is
noise^2 (||V - W^T||^2 - ||W||^2), whose gradient 2 noise^2 (V - W^T)
vanishes at V = W^T; the DRL's minimiser is the damped pseudo-inverse
Q = J^T (J J^T + lam I)^{-1} of the Jacobian J of F_l (a damped
Gauss-Newton target). GAIT-prop has no feedback parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from localgrad.activations import Activation
from localgrad.activations import apply as activate
from localgrad.activations import derivative_at as derivative

VARIANTS = ("dtp", "tp", "ddtp", "ldrl", "gait")
LOSSES = ("ce", "mse")
# Activations whose inverse GAIT-prop needs (ReLU has none).
INVERTIBLE = (Activation.IDENTITY, Activation.LEAKY_RELU, Activation.TANH, Activation.SIGMOID)


def inverse(h: torch.Tensor, kind: int, slope: float = 0.0) -> torch.Tensor:
    """s^{-1}(h); tanh and sigmoid clamp h into their open range first."""
    kind = Activation(kind)
    if kind is Activation.IDENTITY:
        return h
    if kind is Activation.LEAKY_RELU:
        return torch.where(h > 0, h, h / slope)
    tiny = torch.finfo(h.dtype).eps
    if kind is Activation.TANH:
        return torch.atanh(h.clamp(-1 + tiny, 1 - tiny))
    if kind is Activation.SIGMOID:
        return torch.logit(h.clamp(tiny, 1 - tiny))
    raise ValueError(f"target_prop: activation code {int(kind)} has no inverse (GAIT-prop needs one)")


def forward(x, weights, biases, kinds, slopes) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """([h_0 = x, h_1, ..., h_L], [a_1, ..., a_L])."""
    hs, pre = [x], []
    for w, b, kind, slope in zip(weights, biases, kinds, slopes):
        a = hs[-1] @ w.T + b
        pre.append(a)
        hs.append(activate(a, kind, slope))
    return hs, pre


def loss_gradient(out: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """dloss/dh_L per sample; `target` one-hot for "ce"."""
    if loss == "mse":
        return out - target
    return torch.softmax(out, dim=1) - target


def loss_value(out: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """Batch-mean loss (0 for an empty batch)."""
    if out.shape[0] == 0:
        return out.new_zeros(())
    if loss == "mse":
        return 0.5 * (out - target).pow(2).sum(1).mean()
    return -(target * torch.log_softmax(out, dim=1)).sum(1).mean()


def output_target(out: torch.Tensor, target: torch.Tensor, beta: float, loss: str) -> torch.Tensor:
    """t_L = h_L - beta dloss/dh_L."""
    return out - beta * loss_gradient(out, target, loss)


def feedback(h: torch.Tensor, v: torch.Tensor, c: torch.Tensor, kind: int, slope: float = 0.0,
             gate: torch.Tensor | None = None) -> torch.Tensor:
    """g(h) = s(V h + c), batched: h (batch, n_l), V (n_{l-1}, n_l), c (n_{l-1},).
    With `gate` (batch, n_l), the gated form V (gate * h) + c (no activation)."""
    if gate is not None:
        return (h * gate) @ v.T + c
    return activate(h @ v.T + c, kind, slope)


def tp_targets(hs: Sequence[torch.Tensor], t_out: torch.Tensor,
               inverses: Sequence[Callable[[torch.Tensor], torch.Tensor]], difference: bool) -> list[torch.Tensor]:
    """[t_1, ..., t_L] through layer-wise feedback: inverses[l-2] is g_l
    (l = 2..L), mapping h_l to h_{l-1}. difference=False: TP (Bengio 2014,
    t_{l-1} = g_l(t_l)); True: DTP (Lee 2015 eq. 11)."""
    n = len(hs) - 1
    targets = [None] * n
    targets[-1] = t_out
    for l in range(n, 1, -1):  # layer l gives the target of layer l-1
        g = inverses[l - 2]
        t = g(targets[l - 1])
        if difference:
            t = hs[l - 1] + t - g(hs[l])
        targets[l - 2] = t
    return targets


def ddtp_targets(hs: Sequence[torch.Tensor], t_out: torch.Tensor, qs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """[t_1, ..., t_L] with direct linear feedback (DDTP-linear, Meulemans
    2020): t_l = h_l + (t_L - h_L) Q_l^T, qs[l-1] = Q_l (n_l, n_L)."""
    d = t_out - hs[-1]
    return [hs[l] + d @ qs[l - 1].T for l in range(1, len(hs) - 1)] + [t_out]


def gait_targets(hs, pre, t_out, weights, biases, kinds, slopes, gamma: float) -> list[torch.Tensor]:
    """[t_1, ..., t_L] of GAIT-prop (Ahmad et al. 2020 eq. 9): the exact
    inverse of every layer l >= 2 (square W_l, invertible s_l) applied to the
    incremental target (1 - gamma f'^2) h_l + gamma f'^2 t_l."""
    n = len(weights)
    targets = [None] * n
    targets[-1] = t_out
    for l in range(n, 1, -1):
        i = l - 1
        fp2 = derivative(pre[i], kinds[i], slopes[i]) ** 2
        mixed = hs[l] + gamma * fp2 * (targets[i] - hs[l])
        rhs = inverse(mixed, kinds[i], slopes[i]) - biases[i]
        targets[i - 1] = torch.linalg.solve(weights[i], rhs.T).T  # W^{-1} (s^{-1}(.) - b)
    return targets


def target_scales(variant: str, n_layers: int, beta: float, gamma: float = 1.0) -> list[float]:
    """Size of the output nudge that reaches layer l = 1..L: beta, or for
    GAIT-prop beta gamma^(L-l)."""
    if variant == "gait":
        return [beta * gamma ** (n_layers - l) for l in range(1, n_layers + 1)]
    return [beta] * n_layers


def forward_gradients(hs, pre, targets, kinds, slopes, scales) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(dW_l, db_l) of the local losses 1/2 ||s_l(a_l) - t_l||^2 (h_{l-1}, t_l
    fixed), batch mean, each divided by scales[l-1]: the forward weights'
    .grad."""
    batch = max(hs[0].shape[0], 1)
    grads = []
    for l in range(1, len(hs)):
        delta = derivative(pre[l - 1], kinds[l - 1], slopes[l - 1]) * (hs[l] - targets[l - 1])
        delta = delta / (batch * scales[l - 1])
        grads.append((delta.T @ hs[l - 1], delta.sum(0)))
    return grads


def layer(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, kind: int, slope: float) -> torch.Tensor:
    """f_l(h) = s_l(W h + b)."""
    return activate(h @ w.T + b, kind, slope)


def feedback_losses(variant, hs, weights, biases, kinds, slopes, fb, noise_in, noise_out, lam: float = 0.0,
                    gates=None):
    """Per-layer feedback losses, each the batch sum over samples (divide by
    the batch for the mean). fb: layer-wise [(V_l, c_l)] for l = 2..L (tp,
    dtp, ldrl) or direct [Q_l] for l = 1..L-1 (ddtp). noise_in[k], noise_out[k]:
    the noise of the k-th feedback map (shaped like its input-side state and
    its output-side state; noise_out unused by tp/dtp). Differentiable in fb;
    the forward weights enter as given (pass them detached). gates[l-2]: the
    gate of g_l in the gated form (None: s_{l-1}(V h + c))."""
    losses = []
    n = len(weights)
    if variant == "ddtp":
        out = hs[-1]
        for l in range(1, n):
            q, eps, eta = fb[l - 1], noise_in[l - 1], noise_out[l - 1]
            h = hs[l] + eps
            for k in range(l, n):
                h = layer(h, weights[k], biases[k], kinds[k], slopes[k])
            rec = (h - out) @ q.T - eps
            losses.append(rec.pow(2).sum() + lam * (eta @ q.T).pow(2).sum())
        return losses
    for l in range(2, n + 1):
        v, c = fb[l - 2]
        kind, slope = kinds[l - 2], slopes[l - 2]  # g_l reconstructs h_{l-1} = s_{l-1}(.)
        gate = None if gates is None else gates[l - 2]
        eps = noise_in[l - 2]
        x = hs[l - 1] + eps
        fx = layer(x, weights[l - 1], biases[l - 1], kinds[l - 1], slopes[l - 1])
        if variant in ("tp", "dtp"):
            losses.append((feedback(fx, v, c, kind, slope, gate) - x).pow(2).sum())
        elif variant == "ldrl":
            eta = noise_out[l - 2]
            g0 = feedback(hs[l], v, c, kind, slope, gate)
            term1 = -2 * (eps * (feedback(fx, v, c, kind, slope, gate) - g0)).sum()
            term2 = (feedback(hs[l] + eta, v, c, kind, slope, gate) - g0).pow(2).sum()
            losses.append(term1 + term2)
        else:
            raise ValueError(f"target_prop: variant {variant!r} has no feedback loss")
    return losses



def linear_feedback_gradients(variant, hs, pre, weights, biases, kinds, slopes, fb, noise_in, noise_out,
                              gated: bool = True):
    """The feedback losses' gradients in closed form (no autograd), for the
    layer-wise maps that are linear in h: gated, g_l(h) = V_l (s_l'(a_l) * h) + c_l,
    or (gated=False, for s_{l-1} the identity) g_l(h) = V_l h + c_l (gate 1).
    Variants tp, dtp, ldrl; noise_in[k], noise_out[k]: (S B, .) for S noise
    samples stacked sample-major over the B batch rows of hs and pre.
    Returns ([(dV_l, dc_l)] for l = 2..L, the loss) as batch means over the
    S B rows: what `feedback_losses` gives through autograd (see
    `map_feedback_gradients`, one map's arguments as the fused op takes them)."""
    n = len(weights)
    maps = range(2, n + 1)
    gates = [derivative(pre[l - 1], kinds[l - 1], slopes[l - 1]) for l in maps] if gated else None
    return map_feedback_gradients(
        variant, [hs[l - 1] for l in maps], [hs[l] for l in maps], gates, [weights[l - 1] for l in maps],
        [biases[l - 1] for l in maps], [kinds[l - 1] for l in maps], [slopes[l - 1] for l in maps],
        [fb[l - 2][0] for l in maps], [fb[l - 2][1] for l in maps], noise_in, noise_out)


def map_feedback_gradients(variant, inputs, outputs, gates, weights, biases, kinds, slopes, fb_weights,
                           fb_biases, noise_in, noise_out):
    """Every map's closed-form feedback gradient, map k being g_l, l = k + 2:
    inputs[k] = h_{l-1} (B, n), outputs[k] = h_l (B, m), gates[k] = s_l'(a_l)
    (B, m) or gates None (gate 1), weights[k] = W_l (m, n), biases[k] = b_l,
    kinds[k]/slopes[k] layer l's activation, fb_weights[k] = V_l (n, m),
    fb_biases[k] = c_l (n,), noise_in[k] = eps (S B, n), noise_out[k] = eta
    (S B, m; ldrl only). With x = h_{l-1} + eps (row s B + i of eps on batch
    row i), f = s_l(x W^T + b), q the gate:

        tp, dtp  u = q * f,  r = u V^T + c - x:    dV = 2 r^T u,  dc = 2 sum_n r,  loss ||r||^2
        ldrl     Q = q * (f - h_l),  P = q * eta:  E = eps^T Q,
                 dV = 2 ((P V^T)^T P - E),  dc = 0,  loss -2 <E, V> + ||P V^T||^2

    (Ernoult 2022 eq. 10 with g linear in h: term1 = -2 eps . (Q V^T), c
    cancels; term2 = ||P V^T||^2.) All divided by S B; returns
    ([(dV_k, dc_k)], the loss summed over the maps)."""
    if variant not in ("tp", "dtp", "ldrl"):
        raise ValueError(f"target_prop: variant {variant!r} has no layer-wise linear feedback")
    grads, total = [], None
    for k in range(len(inputs)):
        h_in, h_out, v, c, eps = inputs[k], outputs[k], fb_weights[k], fb_biases[k], noise_in[k]
        batch, rows = h_in.shape[0], eps.shape[0]
        samples = rows // batch if batch else 1
        scale = 1.0 / max(rows, 1)

        def rep(t):
            return t.repeat(samples, 1) if samples != 1 else t

        x = rep(h_in) + eps
        f = layer(x, weights[k], biases[k], kinds[k], slopes[k])
        q = None if gates is None else rep(gates[k])
        if variant in ("tp", "dtp"):
            u = f if q is None else f * q
            r = u @ v.T + c - x
            grads.append((2 * scale * (r.T @ u), 2 * scale * r.sum(0)))
            loss = scale * r.pow(2).sum()
        else:
            d = f - rep(h_out)
            qq = d if q is None else d * q
            p = noise_out[k] if q is None else noise_out[k] * q
            pv = p @ v.T
            e = eps.T @ qq
            grads.append((2 * scale * (pv.T @ p - e), torch.zeros_like(c)))
            loss = scale * (pv.pow(2).sum() - 2 * (e * v).sum())
        total = loss if total is None else total + loss
    if total is None:
        total = inputs[0].new_zeros(()) if inputs else torch.zeros(())
    return grads, total


# --- Strided-conv nets (L-DRL with transposed-conv feedback) -----------------
#
# Ernoult et al. 2022 (sec. 5) train CNNs with L-DRL, the feedback of a
# convolution being a transposed convolution of the same geometry. A layer
# is f_l(h) = s_l(conv2d(h, W_l, b_l; stride, padding)) or, after Flatten,
# s_l(W_l flatten(h) + b_l); its feedback maps h_l back to h_{l-1}'s shape:
#
#     g_l(h) = s_{l-1}(conv_transpose2d(h, V_l, c_l; stride, padding))   (papers' form)
#     g_l(h) = conv_transpose2d(s_l'(a_l) * h, V_l, c_l; ...)           (gated, ours)
#
# with V_l shaped like W_l (C_out, C_in, k_h, k_w) and the output padding
# chosen so that the output has h_{l-1}'s exact shape; with V_l = W_l the
# linear part is the adjoint of the convolution (J_f^T for an identity s_l).
# A Linear layer's feedback is the Linear one above, reshaped to h_{l-1}'s
# shape (Flatten's feedback). The targets (tp_targets), the feedback losses
# (layerwise_feedback_losses) and the forward update (module_forward_gradients)
# are the MLP's equations with these maps; their gradients come from
# autograd (no fused op).


def conv_feedback(h: torch.Tensor, v: torch.Tensor, c: torch.Tensor, stride, padding, out_hw, kind: int,
                  slope: float = 0.0, gate: torch.Tensor | None = None) -> torch.Tensor:
    """g(h) for a Conv2d layer: h (batch, C_out, H_out, W_out) -> (batch,
    C_in, *out_hw); V (C_out, C_in, kh, kw) like the Conv2d weight."""
    tall, wide = out_hw
    kh, kw = v.shape[-2:]
    pad = [(h.shape[-2] - 1) * stride[0] - 2 * padding[0] + kh, (h.shape[-1] - 1) * stride[1] - 2 * padding[1] + kw]
    extra = (tall - pad[0], wide - pad[1])  # output_padding: the shape maps back exactly
    if gate is not None:
        return torch.nn.functional.conv_transpose2d(h * gate, v, c, stride, padding, extra)
    return activate(torch.nn.functional.conv_transpose2d(h, v, c, stride, padding, extra), kind, slope)


def layerwise_feedback_losses(variant, inputs, outputs, layers, maps, noise_in, noise_out):
    """The layer-wise feedback losses with the layers and maps as callables
    (any tensor shapes): map k is g_l, l = k + 2, inputs[k] = h_{l-1},
    outputs[k] = h_l (their rows repeated for stacked noise samples),
    `layers[k](x)` = f_l(x) (forward weights held fixed), `maps[k](h)` = g_l(h)
    (differentiable in its parameters), noise_in[k] / noise_out[k] shaped
    like inputs[k] / outputs[k]. The tp/dtp reconstruction loss (Lee eq. 13)
    or L-DRL's (Ernoult eq. 10), each the sum over the rows: as
    `feedback_losses`."""
    losses = []
    for k in range(len(inputs)):
        eps, g = noise_in[k], maps[k]
        x = inputs[k] + eps
        gfx = g(layers[k](x))
        if variant in ("tp", "dtp"):
            losses.append((gfx - x).pow(2).sum())
        elif variant == "ldrl":
            g0 = g(outputs[k])
            term1 = -2 * (eps * (gfx - g0)).sum()
            term2 = (g(outputs[k] + noise_out[k]) - g0).pow(2).sum()
            losses.append(term1 + term2)
        else:
            raise ValueError(f"target_prop: variant {variant!r} has no layer-wise feedback loss")
    return losses


def module_forward_gradients(pre_fns, params, hs, pre, targets, kinds, slopes, scales):
    """The forward .grad of the local losses 1/2 ||s_l(a_l) - t_l||^2
    (h_{l-1}, t_l fixed), batch mean, divided by scales[l-1], for layers given
    as `pre_fns[l-1](h_{l-1})` = a_l (differentiable in params[l-1]): autograd
    pulls delta_l = s_l'(a_l) (h_l - t_l) / (batch scale_l) back through a_l.
    What `forward_gradients` gives for Linear layers."""
    batch = max(hs[0].shape[0], 1)
    grads = []
    for l in range(1, len(hs)):
        delta = derivative(pre[l - 1], kinds[l - 1], slopes[l - 1]) * (hs[l] - targets[l - 1])
        delta = delta / (batch * scales[l - 1])
        with torch.enable_grad():
            a = pre_fns[l - 1](hs[l - 1])
            grads.append(torch.autograd.grad(a, params[l - 1], delta))
    return grads
