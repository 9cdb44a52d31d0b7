"""Forward-Forward under the Learner API (`ff`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from localgrad import activations
from localgrad._checks import as_float, as_int
from localgrad.distributed import shard_offset
from localgrad.learner import Learner, StepOutput, UnsupportedModelError, add_to_grad, register_rule
from localgrad.ops.forward_forward import GOODNESS, LOSSES, NORMALIZE, forward_forward_step
from localgrad.reference import forward_forward as ref
from localgrad.training import check_labels

NEGATIVES = ("wrong_label", "hybrid")
READOUTS = ("goodness", "linear")


def forward_layers(model: nn.Module, rule: str) -> list[tuple[nn.Linear, int, float]]:
    """(Linear, activation code, LeakyReLU slope) of every layer of a stock
    MLP: an nn.Sequential of Linear layers, each followed by at most one
    activation (localgrad.activations' kinds; none is the identity), an
    nn.Flatten allowed first. Anything else raises UnsupportedModelError."""
    if not isinstance(model, nn.Sequential):
        raise UnsupportedModelError(f"{rule}: the model must be an nn.Sequential of Linear layers and activations, "
                                    f"got {type(model).__name__}")
    layers: list[list] = []
    for i, m in enumerate(model):
        if isinstance(m, nn.Flatten) and not layers:
            continue
        if type(m) is nn.Linear:
            layers.append([m, int(activations.Activation.IDENTITY), 0.0])
            continue
        act = activations.from_module(m)
        if act is None or not layers or layers[-1][1] != activations.Activation.IDENTITY:
            raise UnsupportedModelError(f"{rule}: model[{i}] ({type(m).__name__}) is not a Linear layer or one "
                                        "activation after one (identity, relu, leaky relu, tanh, sigmoid)")
        layers[-1][1:] = [int(act[0]), act[1]]
    if not layers:
        raise UnsupportedModelError(f"{rule}: the model has no nn.Linear layer")
    return [tuple(layer) for layer in layers]


def negative_batch(x: torch.Tensor, y: torch.Tensor, n_classes: int, negatives: str, generator: torch.Generator,
                   first: int, union: int, label_scale: float = 1.0, image_shape=None):
    """(x_pos, x_neg) of this rank's rows first.. of a union batch of `union`
    rows. wrong_label: the true label embedded in x_pos, a uniformly drawn
    other label in x_neg (section 3.3), drawn for the whole union batch so
    that data-parallel ranks see the union batch's draws. hybrid (section
    3.2, unsupervised): x_pos = x, x_neg mixes each image with another of
    this batch through a blurred random mask (image_shape (H, W))."""
    batch = x.shape[0]
    if negatives == "wrong_label":
        shift = torch.randint(1, n_classes, (union,), generator=generator, device=generator.device)
        shift = shift[first:first + batch].to(y.device)
        return (ref.embed_label(x, y, n_classes, label_scale),
                ref.embed_label(x, ref.wrong_labels(y, n_classes, shift), n_classes, label_scale))
    bits = torch.randint(0, 2, (batch, *image_shape), generator=generator, device=generator.device).to(x)
    # The partner of row i is row i + k mod B, k in [1, B - 1]: never itself (one row: itself).
    k = int(torch.randint(1, max(batch, 2), (), generator=generator, device=generator.device)) % max(batch, 1)
    mask = ref.hybrid_mask(image_shape, bits)
    return x, mask * x + (1 - mask) * x.roll(-k, 0)


class ForwardForwardLearner(Learner):
    """ff: every Linear layer of a stock MLP (forward_layers) learns by its
    own goodness loss (localgrad.reference.forward_forward), all layers and
    both passes in one fused call (localgrad.ops.forward_forward_step).

    The label is embedded in the input as the paper does for MNIST: the first
    n_classes input features are overwritten by label_scale * one_hot(y), so
    the first Linear takes the data as is with those features given up
    (MNIST's first 10 pixels are black in every image). predict(x) returns
    (batch, n_classes) scores: readout="goodness" (default), the goodness
    accumulated over layers score_from.. for each label embedded in turn
    (section 3.3; default every layer: the paper skips the first of its
    four 2000-unit layers, score_from=1, but on the demo's two-layer nets
    the first layer carries most of the signal, and the last alone scores
    below chance for the first epochs); readout="linear", the model's last Linear as a softmax readout of
    the last hidden layer's normalised activity with the neutral label
    (1/n_classes each) embedded, trained by cross-entropy on that detached
    activity (no gradient reaches the FF layers).

    Options: n_classes (default: the last Linear's width), goodness
    ("sumsq", "meansq", "neg_sumsq"), loss ("threshold", "symmetric"),
    threshold (a float or one per FF layer; default each layer's width for
    sumsq/neg_sumsq, 1 for meansq: mean square activity 1), alpha (the
    symmetric loss's scale, default 1), normalize ("rms", the default: the
    paper's length normalisation scaled so that a row's mean square is 1,
    which is what the default threshold measures against; "l2": unit length;
    "none"), eps,
    negatives ("wrong_label", "hybrid": unsupervised, no label embedded,
    needs readout="linear" and image_shape, default square; the partner
    images are this rank's own), label_scale."""

    def __init__(self, model, *, rule: str, seed: int = 0, process_group=None, n_classes: int | None = None,
                 goodness: str = "sumsq", loss: str = "threshold", threshold=None, alpha: float = 1.0,
                 normalize: str = "rms", eps: float = 1e-8, negatives: str = "wrong_label", readout: str = "goodness",
                 label_scale: float = 1.0, score_from: int | None = None, image_shape=None):
        super().__init__(model, rule=rule, seed=seed, process_group=process_group)
        for value, table, what in ((goodness, GOODNESS, "goodness"), (loss, LOSSES, "loss"),
                                   (normalize, NORMALIZE, "normalize"), (negatives, NEGATIVES, "negatives"),
                                   (readout, READOUTS, "readout")):
            if value not in table:
                raise ValueError(f"{rule}: {what} must be one of {', '.join(table)}, got {value!r}")
        layers = forward_layers(model, rule)
        if readout == "linear":
            if len(layers) < 2:
                raise UnsupportedModelError(f"{rule}: readout='linear' needs a hidden Linear before the readout")
            if layers[-1][1] != activations.Activation.IDENTITY:
                raise UnsupportedModelError(f"{rule}: the linear readout (the last Linear) must have no activation")
            self.readout = layers[-1][0]
            layers = layers[:-1]
        else:
            self.readout = None
        if negatives == "hybrid" and readout != "linear":
            raise ValueError(f"{rule}: negatives='hybrid' embeds no label; it needs readout='linear'")
        self.layers = [m for m, _, _ in layers]
        self.kinds = [k for _, k, _ in layers]
        self.slopes = [s for _, _, s in layers]
        widths = [m.out_features for m in self.layers]
        last = self.readout if self.readout is not None else self.layers[-1]
        self.n_classes = as_int(last.out_features if n_classes is None else n_classes, rule, "n_classes", minimum=2)
        n_in = self.layers[0].in_features
        if negatives == "wrong_label" and n_in <= self.n_classes:
            raise UnsupportedModelError(f"{rule}: the first Linear takes {n_in} features, but the label overwrites "
                                        f"the first {self.n_classes} (n_classes): it needs more inputs than classes")
        self.goodness, self.loss, self.normalize = goodness, loss, normalize
        self.negatives, self.readout_kind = negatives, readout
        self.alpha = as_float(alpha, rule, "alpha", positive=True)
        self.eps = as_float(eps, rule, "eps", nonnegative=True)
        self.label_scale = as_float(label_scale, rule, "label_scale")
        if threshold is None:
            self.thresholds = [1.0 if goodness == "meansq" else float(m) for m in widths]
        elif isinstance(threshold, (list, tuple)):
            if len(threshold) != len(widths):
                raise ValueError(f"{rule}: threshold must be a number or one per FF layer ({len(widths)}), "
                                 f"got {len(threshold)}")
            self.thresholds = [as_float(t, rule, f"threshold[{i}]") for i, t in enumerate(threshold)]
        else:
            self.thresholds = [as_float(threshold, rule, "threshold")] * len(widths)
        self.score_from = as_int(0 if score_from is None else score_from, rule, "score_from", minimum=0)
        if self.score_from >= len(self.layers):
            raise ValueError(f"{rule}: score_from must be below the number of FF layers ({len(self.layers)}), "
                             f"got {self.score_from}")
        if negatives == "hybrid":
            if image_shape is None:
                side = math.isqrt(n_in)
                if side * side != n_in:
                    raise ValueError(f"{rule}: negatives='hybrid' needs image_shape for {n_in} input features")
                image_shape = (side, side)
            image_shape = tuple(as_int(s, rule, "image_shape", minimum=1) for s in image_shape)
            if len(image_shape) != 2 or image_shape[0] * image_shape[1] != n_in:
                raise ValueError(f"{rule}: image_shape must be (H, W) with H W = {n_in}, got {image_shape}")
        self.image_shape = image_shape
        w = self.layers[0].weight
        self.generator = torch.Generator(device=w.device).manual_seed(self.seed)
        # What broadcast_state gives every rank from rank 0 (localgrad.distributed.replicated_state).
        self.replicated = ("generator",)
        self._shard = None

    # -- the step ----------------------------------------------------------------

    def _params(self):
        weights = [m.weight.detach() for m in self.layers]
        biases = [m.bias.detach() if m.bias is not None else m.weight.new_zeros(m.out_features) for m in self.layers]
        return weights, biases

    def _inputs(self, x):
        x = x.flatten(1)
        if x.shape[1] != self.layers[0].in_features:
            raise ValueError(f"{self.rule}: x must have {self.layers[0].in_features} features per sample, "
                             f"got shape {tuple(x.shape)}")
        return x

    def _step(self, x, y):
        check_labels(y, x.shape[0], self.n_classes, self.rule)
        x = self._inputs(x)
        batch = x.shape[0]
        if self._shard is None or self._shard[0] != batch:
            self._shard = (batch, *shard_offset(batch, self.process_group))
        _, first, union = self._shard
        x_pos, x_neg = negative_batch(x, y, self.n_classes, self.negatives, self.generator, first, union,
                                      self.label_scale, self.image_shape)
        weights, biases = self._params()
        gw, gb, _, losses = forward_forward_step(x_pos, x_neg, weights, biases, self.kinds, self.slopes,
                                                 self.thresholds, self.goodness, self.loss, self.normalize,
                                                 self.alpha, self.eps)
        for m, dw, db in zip(self.layers, gw, gb):
            add_to_grad(m.weight, dw, owned=True)
            if m.bias is not None:
                add_to_grad(m.bias, db, owned=True)
        total = losses.sum()
        out = None
        if self.readout is not None:
            features = self._features(x, weights, biases)
            with torch.enable_grad():
                out = F.linear(features, self.readout.weight, self.readout.bias)
                ce = F.cross_entropy(out, y)
                params = [p for p in self.readout.parameters() if p.requires_grad]
                grads = torch.autograd.grad(ce, params) if params else ()
            for p, g in zip(params, grads):
                add_to_grad(p, g, owned=True)
            total = total + ce.detach()
            out = out.detach()
        return StepOutput(total.detach(), out)

    def _features(self, x, weights, biases):
        """The readout's input: the last FF layer's normalised activity, the
        neutral label embedded (none for hybrid negatives)."""
        h = x
        if self.negatives == "wrong_label":
            neutral = x.new_full((x.shape[0], self.n_classes), 1.0 / self.n_classes)
            h = ref.embed_label(x, neutral, self.n_classes, self.label_scale)
        for w, b, k, s in zip(weights, biases, self.kinds, self.slopes):
            h = ref.layer_forward(h, w, b, k, s, self.normalize, self.eps)
        return ref.normalize(h, self.normalize, self.eps).detach()

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, n_classes) scores, argmax the class (see the class docstring)."""
        x = self._inputs(x)
        weights, biases = self._params()
        if self.readout is not None:
            return self.readout(self._features(x, weights, biases))
        return ref.scores(x, weights, biases, self.kinds, self.slopes, self.n_classes, self.goodness, self.normalize,
                          self.eps, self.score_from, self.label_scale)

    def state_dict(self):
        return {**super().state_dict(), "rng_state": self.generator.get_state()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.generator.set_state(state["rng_state"])


register_rule("ff", family="forward_forward",
              summary="Forward-Forward: layer-local goodness of positive (true label) vs negative (wrong label) data",
              paper="Hinton 2022, arXiv:2212.13345")(ForwardForwardLearner)
