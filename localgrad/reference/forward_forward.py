"""Forward-Forward (Hinton 2022, "The Forward-Forward Algorithm: Some
Preliminary Investigations", arXiv:2212.13345): the maths, in float64-safe
PyTorch. The oracle of the fused op (localgrad.ops.forward_forward_step) and
its fallback without the extension.

Every layer l is trained by its own loss, on its own input, with no gradient
crossing layers. Its input is the previous layer's output normalised
(section 2.1: "the length of the hidden vector is normalised before it is
used as input to the next layer", so that goodness cannot leak into the next
layer through the length alone), here for every layer, the data included:

    n(h) = h / (||h||_2 + eps)                  normalize "l2"
    n(h) = h / (sqrt(mean_j h_j^2) + eps)       normalize "rms"
    n(h) = h                                    normalize "none"

    z_l = n(h_{l-1}) W_l^T + b_l,   a_l = f_l(z_l)     (h_0: the data, a row per sample)

Goodness of a row (section 2, eq. 1 uses the sum of squares; the paper
names its negative as the alternative; the mean of squares is the common
re-implementations' choice, a sum scaled by 1/m):

    s_l = sum_j a_j^2 ("sumsq"),  (1/m) sum_j a_j^2 ("meansq"),  sign sigma = +1
    s_l = sum_j a_j^2 ("neg_sumsq"),                              sigma = -1
    goodness g_l = sigma s_l,   logit u_l = sigma (s_l - theta_l)

Losses of the positive row i (x_pos[i]: label embedded, the true one) and
its negative (x_neg[i]: a wrong label, or a hybrid image), batch-mean:

    "threshold" (eq. 1: p(positive) = logistic(u)):
        L_l = mean_i [ softplus(-u_pos[i]) + softplus(u_neg[i]) ]
    "symmetric" (Lee & Song 2023, SymBa, arXiv:2303.08418; alpha = 1 is the
    pairwise softmax contrast -log(e^{g+} / (e^{g+} + e^{g-}))):
        L_l = mean_i softplus(-alpha (u_pos[i] - u_neg[i]))

The update of layer l, in closed form (what the fused op computes, checked
against autograd of `layer_loss`): with c_i = dL/du for each row of each
pass (threshold: -logistic(-u_pos), logistic(u_neg); symmetric: -alpha q,
+alpha q with q = logistic(-alpha (u_pos - u_neg))),

    delta = (c_i / B) sigma ds/da f'(z),   ds/da = 2 a (sumsq) or 2 a / m (meansq)
    dL/dW_l = delta_pos^T n(h_pos) + delta_neg^T n(h_neg),   dL/db_l = sum_i (delta_pos + delta_neg)

Shapes: x_pos, x_neg (B, n_0); weights[l] (n_{l+1}, n_l); biases[l] (n_{l+1},).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from localgrad import activations

GOODNESS = ("sumsq", "meansq", "neg_sumsq")
LOSSES = ("threshold", "symmetric")
NORMALIZE = ("l2", "rms", "none")


def embed_label(x: torch.Tensor, y: torch.Tensor, n_classes: int, scale: float = 1.0) -> torch.Tensor:
    """x (B, n) with its first n_classes features replaced by scale * one_hot(y)
    (section 3.3: the label in the first 10 pixels of an MNIST image, which
    are black in every digit). y: class indices (B,), or a float (B, n_classes)
    row to write as is (the neutral label 1/n_classes)."""
    out = x.clone()
    if y.is_floating_point():
        out[:, :n_classes] = scale * y
    else:
        out[:, :n_classes] = 0
        out[torch.arange(x.shape[0], device=x.device), y] = scale
    return out


def wrong_labels(y: torch.Tensor, n_classes: int, shift: torch.Tensor) -> torch.Tensor:
    """The negative rows' labels: y + shift mod n_classes with shift in
    [1, n_classes - 1], so never the true label, and uniform over the wrong
    ones when shift is uniform there."""
    return (y + shift) % n_classes


def hybrid_mask(shape: Sequence[int], bits: torch.Tensor, blur_steps: int = 6) -> torch.Tensor:
    """Section 3.2's mask for hybrid negatives: a random bit image blurred
    `blur_steps` times by [1/4, 1/2, 1/4] along both axes, thresholded at
    1/2: large regions of ones and zeros. bits: (B, H, W) in {0, 1}."""
    m = bits.reshape(bits.shape[0], 1, *shape)
    kernel = m.new_tensor([0.25, 0.5, 0.25])
    for _ in range(blur_steps):
        m = F.conv2d(F.pad(m, (1, 1, 0, 0), mode="replicate"), kernel.view(1, 1, 1, 3))
        m = F.conv2d(F.pad(m, (0, 0, 1, 1), mode="replicate"), kernel.view(1, 1, 3, 1))
    return (m > 0.5).to(bits.dtype).reshape(bits.shape[0], -1)


def normalize(h: torch.Tensor, mode: str, eps: float) -> torch.Tensor:
    """A layer's input, n(h) (module docstring), row by row."""
    if mode == "l2":
        return h / (h.norm(dim=1, keepdim=True) + eps)
    if mode == "rms":
        return h / (h.pow(2).mean(dim=1, keepdim=True).sqrt() + eps)
    if mode == "none":
        return h
    raise ValueError(f"forward_forward: normalize must be one of {NORMALIZE}, got {mode!r}")


def goodness(a: torch.Tensor, kind: str) -> torch.Tensor:
    """g (B,) of activities a (B, m)."""
    if kind == "sumsq":
        return a.pow(2).sum(1)
    if kind == "meansq":
        return a.pow(2).mean(1)
    if kind == "neg_sumsq":
        return -a.pow(2).sum(1)
    raise ValueError(f"forward_forward: goodness must be one of {GOODNESS}, got {kind!r}")


def logit(a: torch.Tensor, kind: str, threshold: float) -> torch.Tensor:
    """u = sigma (s - theta): positive rows should have u > 0."""
    g = goodness(a, kind)
    return g + threshold if kind == "neg_sumsq" else g - threshold


def softplus(x: torch.Tensor) -> torch.Tensor:
    """log(1 + e^x) to the last bit (F.softplus returns x itself above 20,
    an error of e^-20 ~ 2e-9 that a float64 oracle cannot have)."""
    return torch.logaddexp(x, torch.zeros_like(x))


def pair_loss(u_pos: torch.Tensor, u_neg: torch.Tensor, loss: str, alpha: float) -> torch.Tensor:
    """The batch-mean loss of one layer from its rows' logits (B,) each."""
    if loss == "threshold":
        return (softplus(-u_pos) + softplus(u_neg)).mean()
    if loss == "symmetric":
        return softplus(-alpha * (u_pos - u_neg)).mean()
    raise ValueError(f"forward_forward: loss must be one of {LOSSES}, got {loss!r}")


def layer_forward(h_in: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, kind: int, slope: float,
                  normalize_mode: str, eps: float) -> torch.Tensor:
    """a_l = f(n(h_{l-1}) W^T + b) (B, m)."""
    return activations.apply(F.linear(normalize(h_in, normalize_mode, eps), weight, bias), kind, slope)


def layer_loss(h_pos: torch.Tensor, h_neg: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, kind: int,
               slope: float, goodness_kind: str, loss: str, threshold: float, alpha: float, normalize_mode: str,
               eps: float) -> torch.Tensor:
    """Layer l's own loss L_l from its un-normalised inputs h_{l-1} of both
    passes (differentiable in weight and bias: autograd of this is the oracle)."""
    a_pos = layer_forward(h_pos, weight, bias, kind, slope, normalize_mode, eps)
    a_neg = layer_forward(h_neg, weight, bias, kind, slope, normalize_mode, eps)
    return pair_loss(logit(a_pos, goodness_kind, threshold), logit(a_neg, goodness_kind, threshold), loss, alpha)


def _loss_slopes(u_pos, u_neg, loss, alpha):
    """dL/du for each row of each pass, before the 1/B of the mean."""
    if loss == "threshold":
        return -torch.sigmoid(-u_pos), torch.sigmoid(u_neg)
    q = torch.sigmoid(-alpha * (u_pos - u_neg))
    return -alpha * q, alpha * q


def step(x_pos: torch.Tensor, x_neg: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
         kinds: Sequence[int], slopes: Sequence[float], goodness_kind: str = "sumsq", loss: str = "threshold",
         thresholds: Sequence[float] | None = None, alpha: float = 1.0, normalize_mode: str = "l2",
         eps: float = 1e-8):
    """Every layer's update for one batch, in closed form (module docstring).
    Returns (grad_weights, grad_biases, goodness (L, 2, B): rows of the
    positive then the negative pass, losses (L,))."""
    batch = x_pos.shape[0]
    n_layers = len(weights)
    thresholds = [0.0] * n_layers if thresholds is None else list(thresholds)
    h = torch.cat([x_pos, x_neg])
    grad_w, grad_b, good, losses = [], [], [], []
    for l in range(n_layers):
        hn = normalize(h, normalize_mode, eps)
        z = F.linear(hn, weights[l], biases[l])
        a = activations.apply(z, kinds[l], slopes[l])
        u = logit(a, goodness_kind, thresholds[l])
        u_pos, u_neg = u[:batch], u[batch:]
        losses.append(pair_loss(u_pos, u_neg, loss, alpha) if batch else u.new_zeros(()))
        c = torch.cat(_loss_slopes(u_pos, u_neg, loss, alpha)) / max(batch, 1)
        ds = {"sumsq": 2 * a, "meansq": 2 * a / a.shape[1], "neg_sumsq": -2 * a}[goodness_kind]
        delta = c[:, None] * ds * activations.derivative_at(z, kinds[l], slopes[l])
        grad_w.append(delta.t() @ hn)
        grad_b.append(delta.sum(0))
        good.append(goodness(a, goodness_kind).reshape(2, batch))
        h = a
    return grad_w, grad_b, torch.stack(good) if good else x_pos.new_zeros(0, 2, batch), torch.stack(losses)


def scores(x: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor], kinds: Sequence[int],
           slopes: Sequence[float], n_classes: int, goodness_kind: str = "sumsq", normalize_mode: str = "l2",
           eps: float = 1e-8, first: int = 0, label_scale: float = 1.0) -> torch.Tensor:
    """Section 3.3's prediction: for every label c, the goodness accumulated
    over layers first.. with c embedded; (B, n_classes), argmax the class."""
    out = x.new_zeros(x.shape[0], n_classes)
    for c in range(n_classes):
        h = embed_label(x, torch.full((x.shape[0],), c, dtype=torch.long, device=x.device), n_classes, label_scale)
        for l in range(len(weights)):
            h = layer_forward(h, weights[l], biases[l], kinds[l], slopes[l], normalize_mode, eps)
            if l >= first:
                out[:, c] += goodness(h, goodness_kind)
    return out
