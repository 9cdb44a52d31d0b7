"""TargetProp: trains a stock nn.Sequential MLP by target propagation (the
maths: localgrad.reference.target_prop). The feedback gradient of linear or
gated maps comes in closed form from the fused op
localgrad.ops.target_prop_feedback_grads; the rest is ATen in Python.

    learner = TargetProp(model, variant="dtp", beta=0.1)
    optimizer = torch.optim.Adam([*model.parameters(), *learner.feedback_parameters()])
    optimizer.zero_grad()
    loss = learner.step(x, y)   # minus the forward update in the weights' .grad, feedback loss gradient in theirs
    optimizer.step()

The model stays an ordinary module (its forward pass is the network the
targets are propagated through); the feedback maps are the learner's own
parameters (`learner.feedback`, an nn.ModuleList), saved with its noise
generator in `learner.state_dict()`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from localgrad import activations
from localgrad.activations import Activation
from localgrad.distributed import average_gradients, check_replicated, shard_offset
from localgrad._checks import as_float, as_int
from localgrad.ops.target_prop import target_prop_feedback_grads
from localgrad.reference import target_prop as ref
from localgrad.target_prop import conv
from localgrad.training import one_hot_targets
from localgrad.learner import UnsupportedModelError, add_to_grad

VARIANTS = ref.VARIANTS
LOSSES = ref.LOSSES
FEEDBACK = ("nonlinear", "gated")
_INPUT_MODULES = (nn.Flatten, nn.Identity, nn.Unflatten)


def _parse(model) -> tuple[list[nn.Module], list[nn.Linear], list[int], list[float]]:
    """(input modules, Linear layers, kinds, slopes): kinds[l] is the
    activation after Linear l (identity when none follows)."""
    if not isinstance(model, nn.Sequential):
        raise UnsupportedModelError(f"TargetProp: model must be an nn.Sequential of Linear layers and activations, got "
                         f"{type(model).__name__}")
    inputs, linears, kinds, slopes = [], [], [], []
    pending = False
    for i, m in enumerate(model):
        if isinstance(m, nn.Linear):
            if m.bias is None:
                raise UnsupportedModelError(f"TargetProp: model[{i}] is a Linear without bias; give it bias=True")
            linears.append(m)
            kinds.append(int(Activation.IDENTITY))
            slopes.append(0.0)
            pending = False
            continue
        if not linears:
            if isinstance(m, _INPUT_MODULES):
                inputs.append(m)
                continue
            raise UnsupportedModelError(f"TargetProp: model[{i}] ({type(m).__name__}) comes before the first Linear; only "
                             "Flatten/Unflatten/Identity may act on the input")
        if isinstance(m, nn.Identity):
            continue
        act = activations.from_module(m)
        if act is None or pending:
            what = "a second activation after one Linear" if act is not None else f"{type(m).__name__}"
            raise UnsupportedModelError(f"TargetProp: model[{i}] is {what}; the model takes Linear layers, each followed by "
                             "at most one of ReLU, LeakyReLU, Tanh, Sigmoid, Identity")
        kinds[-1], slopes[-1] = int(act[0]), float(act[1])
        pending = True
    if not linears:
        raise UnsupportedModelError("TargetProp: model has no nn.Linear layer")
    return inputs, linears, kinds, slopes


def _positive(name: str, value) -> float:
    return as_float(value, "TargetProp", name, positive=True)


class _Map(nn.Module):
    """One feedback map: weight (out, in) and, for layer-wise maps, bias."""

    def __init__(self, n_out, n_in, bias, generator, dtype, device):
        super().__init__()
        bound = 1 / math.sqrt(n_in)
        w = torch.empty(n_out, n_in, dtype=dtype, device=device).uniform_(-bound, bound, generator=generator)
        self.weight = nn.Parameter(w)
        if bias:
            b = torch.empty(n_out, dtype=dtype, device=device).uniform_(-bound, bound, generator=generator)
            self.bias = nn.Parameter(b)
        else:
            self.register_parameter("bias", None)


class TargetProp:
    """Target propagation learner for `model`, an nn.Sequential of nn.Linear
    layers (with bias), each followed by at most one elementwise activation
    (ReLU, LeakyReLU, Tanh, Sigmoid), with Flatten/Unflatten in front; or
    (variants tp, dtp, ldrl) a strided-conv net: Conv2d layers (bias, any
    stride and zero padding; no pooling, dilation or groups), one Flatten,
    then Linear layers, each followed by at most one such activation. A
    Conv2d layer's feedback is a ConvTranspose2d of its geometry (weight
    shaped like the Conv2d's; the output padding chosen at each call so that
    h_l maps back to h_{l-1}'s exact shape) followed by the activation of
    the layer it reconstructs (Ernoult 2022), or gated; Flatten's feedback
    is the reshape. That path's feedback losses, targets and forward
    updates take their gradients by autograd (localgrad.target_prop.conv;
    no fused op).

    variant: "dtp" (difference target propagation, Lee 2015), "tp" (targets
    through learned inverses, Bengio 2014), "ddtp" (DDTP-linear with the
    difference reconstruction loss, Meulemans 2020: direct linear feedback
    Q_l from the output to every hidden layer), "ldrl" (DTP's targets, the
    feedback trained by Ernoult 2022's local difference reconstruction
    loss), "gait" (GAIT-prop, Ahmad 2020: exact inverses of square layers,
    no feedback parameters; layers 2..L square with invertible activations).
    beta: the output nudge, t_L = h_L - beta dloss/dh_L. noise: the standard
    deviation of the feedback training noise. lam: DRL's regulariser
    (ddtp). gamma: GAIT-prop's incremental step. feedback: the form of the
    layer-wise maps, "nonlinear" (the papers' g_l(h) = s_{l-1}(V_l h + c_l))
    or "gated" (ours: V_l (s_l'(a_l) * h) + c_l, gated by layer l's own
    derivative at the forward pass; it can meet J_g = J_f^T exactly).
    ortho (gait): adds ortho W (W^T W - I), the gradient of
    (ortho/4) ||W^T W - I||^2, to the .grad of layers 2..L (Ahmad et al.'s
    orthogonality penalty, which keeps the inverses well conditioned).
    samples: noise samples per feedback update, stacked into the batch of
    one product (the loss is their mean; Ernoult 2022's layer-parallel DTP
    averages 10). loss: "ce" (class indices or one-hot y, cross-entropy of
    the output) or "mse". seed: the learner's generator (feedback initialisation and noise).

    `step(x, y)` adds to every forward parameter's `.grad` minus its update
    on backprop's scale (the local loss gradient divided by beta; GAIT:
    by beta gamma^(L-l)), to every feedback parameter's `.grad` the gradient
    of its batch-mean feedback loss, and returns the batch-mean loss of the
    model's output. `train_feedback(x)` writes the feedback's `.grad` only
    (feedback warm-up). Noise comes from the learner's generator (`seed`),
    which `state_dict()` saves with the feedback parameters.

    Data-parallel: every rank draws the union batch's noise (its generator
    equal on all ranks, see localgrad.distributed.broadcast_state) and uses
    its own samples' rows; the forward and feedback gradients, batch means
    of per-sample terms, are averaged over the ranks, which gives the union
    batch's exactly when the shards are equally sized.
    """

    name = "TargetProp"

    def __init__(self, model: nn.Sequential, variant: str = "dtp", beta: float = 0.1, noise: float = 0.1,
                 loss: str = "ce", lam: float = 0.0, gamma: float = 0.1, seed: int = 0,
                 feedback: str = "nonlinear", ortho: float = 0.0, samples: int = 1):
        if variant not in VARIANTS:
            raise ValueError(f"TargetProp: variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        if loss not in LOSSES:
            raise ValueError(f"TargetProp: loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if feedback not in FEEDBACK:
            raise ValueError(f"TargetProp: feedback must be one of {', '.join(FEEDBACK)}, got {feedback!r}")
        if feedback == "gated" and variant not in ("tp", "dtp", "ldrl"):
            raise ValueError(f"TargetProp: feedback 'gated' is a form of the layer-wise maps (tp, dtp, ldrl); "
                             f"variant {variant!r} has none")
        self.feedback_form = feedback
        self.beta = _positive("beta", beta)
        self.noise = _positive("noise", noise)
        self.gamma = _positive("gamma", gamma)
        self.lam = as_float(lam, "TargetProp", "lam", nonnegative=True)
        seed = as_int(seed, "TargetProp", "seed")
        ortho = as_float(ortho, "TargetProp", "ortho", nonnegative=True)
        if ortho and variant != "gait":
            raise ValueError(f"TargetProp: ortho is GAIT-prop's orthogonality penalty; variant {variant!r} takes none")
        self.ortho = ortho
        self.samples = as_int(samples, "TargetProp", "samples")
        if self.samples < 1:
            raise ValueError(f"TargetProp: samples must be >= 1, got {self.samples}")
        self.loss_name = loss
        self.layers = None  # the conv path's layers (localgrad.target_prop.conv), None for an MLP
        if conv.has_conv(model):
            maps = self._init_conv(model, variant, seed)
        else:
            self.inputs, self.linears, self.kinds, self.slopes = _parse(model)
            self.model, self.variant, self.loss = model, variant, loss
            sizes = [self.linears[0].in_features] + [m.out_features for m in self.linears]
            self.sizes = sizes
            n = len(self.linears)
            if variant == "gait":
                for l in range(2, n + 1):
                    m = self.linears[l - 1]
                    if m.in_features != m.out_features:
                        raise UnsupportedModelError(f"TargetProp: variant 'gait' needs square layers 2..L (each target passes "
                                         f"through the layer's inverse); Linear layer {l} is {m.out_features} x "
                                         f"{m.in_features}")
                    if Activation(self.kinds[l - 1]) not in ref.INVERTIBLE:
                        raise UnsupportedModelError(f"TargetProp: variant 'gait' needs invertible activations after layers 2..L "
                                         f"(LeakyReLU, Tanh, Sigmoid or none); layer {l} has "
                                         f"{Activation(self.kinds[l - 1]).name}")
                    if self.kinds[l - 1] == Activation.LEAKY_RELU and self.slopes[l - 1] == 0:
                        raise ValueError(f"TargetProp: variant 'gait': layer {l}'s LeakyReLU has slope 0 (no inverse)")
            w = self.linears[0].weight
            self.generator = torch.Generator(device=w.device).manual_seed(seed)
            maps = []
            if variant in ("tp", "dtp", "ldrl"):
                maps = [_Map(sizes[l - 1], sizes[l], True, self.generator, w.dtype, w.device) for l in range(2, n + 1)]
            elif variant == "ddtp":
                maps = [_Map(sizes[l], sizes[-1], False, self.generator, w.dtype, w.device) for l in range(1, n)]
        self.feedback = nn.ModuleList(maps)
        # The feedback gradient in closed form (localgrad.ops.target_prop) where the maps are linear in h
        # (gated, or the papers' form after an identity); False: autograd through the reference's losses.
        self.closed_form = True
        self.process_group = None
        self._shard: tuple[int, int, int] | None = None
        # What broadcast_state gives every rank from rank 0 (localgrad.distributed.replicated_state).
        self.replicated = ("generator",) + tuple(f"_feedback_{i}" for i in range(len(self.feedback_parameters())))
        for i, p in enumerate(self.feedback_parameters()):
            setattr(self, f"_feedback_{i}", p)

    def _init_conv(self, model, variant, seed) -> list[nn.Module]:
        """The strided-conv path (localgrad.target_prop.conv): its layers and
        feedback maps (ConvTranspose2d for a Conv2d layer, a _Map for a Linear one)."""
        if variant not in conv.CONV_VARIANTS:
            raise UnsupportedModelError(f"TargetProp: variant {variant!r} takes Linear layers only; on a model with Conv2d "
                             f"layers use one of {', '.join(conv.CONV_VARIANTS)}")
        self.inputs, self.layers = conv.parse(model)
        self.linears = [layer.module for layer in self.layers if not layer.conv]
        self.kinds = [layer.kind for layer in self.layers]
        self.slopes = [layer.slope for layer in self.layers]
        self.model, self.variant, self.loss = model, variant, self.loss_name
        first = self.layers[0].module
        self.sizes = [first.in_channels] + [getattr(m.module, "out_channels", None) or m.module.out_features
                                            for m in self.layers]
        w = first.weight
        self.generator = torch.Generator(device=w.device).manual_seed(seed)
        return conv.make_feedback(self.layers, self.generator,
                                  lambda n_in, n_out: _Map(n_in, n_out, True, self.generator, w.dtype, w.device))

    def __repr__(self) -> str:
        return (f"TargetProp(variant={self.variant!r}, beta={self.beta}, noise={self.noise}, loss={self.loss!r}, "
                f"sizes={self.sizes})")

    def feedback_parameters(self) -> list[nn.Parameter]:
        return list(self.feedback.parameters())

    def state_dict(self) -> dict:
        feedback = {k: v.detach().clone() for k, v in self.feedback.state_dict().items()}
        return {"variant": self.variant, "feedback": feedback, "rng_state": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("variant") != self.variant:
            raise ValueError(f"TargetProp.load_state_dict: the state is of variant {state.get('variant')!r}, this "
                             f"learner's is {self.variant!r}")
        with torch.no_grad():
            self.feedback.load_state_dict(state["feedback"])  # copies in place: optimizers keep their tensors
        self.generator.set_state(state["rng_state"])

    # --- inputs ---------------------------------------------------------------

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"TargetProp: x must be a tensor, got {type(x).__name__}")
        for m in self.inputs:
            x = m(x)
        if self.layers is not None:
            first = self.layers[0].module
            if x.dim() != 4 or x.shape[1] != first.in_channels:
                raise ValueError(f"TargetProp: x must give (batch, {first.in_channels}, height, width) images, got "
                                 f"{tuple(x.shape)}")
            if x.dtype != first.weight.dtype or x.device != first.weight.device:
                raise ValueError(f"TargetProp: x must be {first.weight.dtype} on {first.weight.device} like the "
                                 f"weights, got {x.dtype} on {x.device}")
            return x
        w = self.linears[0].weight
        if x.dim() != 2 or x.shape[1] != w.shape[1]:
            raise ValueError(f"TargetProp: x must give (batch, {w.shape[1]}) features, got {tuple(x.shape)}")
        if x.dtype != w.dtype or x.device != w.device:
            raise ValueError(f"TargetProp: x must be {w.dtype} on {w.device} like the weights, got {x.dtype} on "
                             f"{x.device}")
        return x

    def _target(self, y: torch.Tensor, batch: int) -> torch.Tensor:
        return one_hot_targets(y, batch, self.linears[-1].weight, "TargetProp")

    # --- the rule ---------------------------------------------------------------

    def _forward(self, x0):
        if self.layers is not None:
            return (None, None, *conv.forward(self.layers, x0))
        weights = [m.weight.detach() for m in self.linears]
        biases = [m.bias.detach() for m in self.linears]
        hs, pre = ref.forward(x0, weights, biases, self.kinds, self.slopes)
        return weights, biases, hs, pre

    def _noise(self, shapes: list[int], batch: int, like: torch.Tensor) -> list[torch.Tensor]:
        """N(0, noise^2) of the union batch, this rank's rows, one tensor per
        width: (samples * batch, n), sample-major (row s * batch + i is sample
        s of batch row i)."""
        if self._shard is None or self._shard[0] != batch:
            self._shard = (batch, *shard_offset(batch, self.process_group))
        _, first, union = self._shard
        s = self.samples
        out = []
        for n in shapes:
            shape = (n,) if isinstance(n, int) else tuple(n)  # a width, or a conv feature map's (C, H, W)
            z = torch.randn(s, union, *shape, generator=self.generator, dtype=like.dtype, device=like.device)
            out.append(z[:, first:first + batch].reshape(s * batch, *shape).mul_(self.noise))
        return out

    def _gates(self, pre):
        """The gates of g_2..g_L (layer l's derivative at the forward pass), or None."""
        if self.feedback_form != "gated":
            return None
        return [ref.derivative(pre[l - 1], self.kinds[l - 1], self.slopes[l - 1]) for l in range(2, len(pre) + 1)]

    def _feedback_grads(self, weights, biases, hs, pre) -> list[nn.Parameter]:
        """Writes the feedback losses' batch-mean gradients into .grad; returns the parameters written."""
        # Frozen feedback parameters (requires_grad=False) keep no .grad and
        # would make autograd.grad refuse the whole call.
        params = [p for p in self.feedback_parameters() if p.requires_grad]
        if not params:
            return []
        if self.layers is not None:
            return self._conv_feedback_grads(params, hs, pre)
        batch = hs[0].shape[0]
        n = len(weights)
        if self.samples > 1 and not self._linear_maps():  # every sample's rows stacked: one product for all
            hs = [h.repeat(self.samples, 1) for h in hs]
            pre = [a.repeat(self.samples, 1) for a in pre]
        if self.variant == "ddtp":
            noise_in = self._noise([self.sizes[l] for l in range(1, n)], batch, hs[0])
            noise_out = self._noise([self.sizes[-1]] * (n - 1), batch, hs[0]) if self.lam else [None] * (n - 1)
            fb = [m.weight for m in self.feedback]
        else:
            noise_in = self._noise([self.sizes[l - 1] for l in range(2, n + 1)], batch, hs[0])
            noise_out = (self._noise([self.sizes[l] for l in range(2, n + 1)], batch, hs[0])
                         if self.variant == "ldrl" else [None] * (n - 1))
            fb = [(m.weight, m.bias) for m in self.feedback]
        if self.variant == "ddtp" and not self.lam:
            noise_out = [hs[0].new_zeros(batch * self.samples, self.sizes[-1])] * (n - 1)
        if self._linear_maps():
            return self._closed_form_grads(params, weights, biases, hs, pre, noise_in, noise_out)
        with torch.enable_grad():
            losses = ref.feedback_losses(self.variant, hs, weights, biases, self.kinds, self.slopes, fb,
                                         noise_in, noise_out, self.lam, self._gates(pre))
            total = sum(losses) / max(batch * self.samples, 1)
            grads = torch.autograd.grad(total, params, allow_unused=True)
        self.last_feedback_loss = total.detach()
        for p, g in zip(params, grads):
            add_to_grad(p, torch.zeros_like(p) if g is None else g)
        return params

    def _linear_maps(self) -> bool:
        """Whether the feedback gradient has the closed form of the fused op."""
        if self.layers is not None or not self.closed_form or self.variant not in ("tp", "dtp", "ldrl"):
            return False
        return self.feedback_form == "gated" or all(k == Activation.IDENTITY for k in self.kinds[:-1])

    def _closed_form_grads(self, params, weights, biases, hs, pre, noise_in, noise_out):
        n = len(weights)
        maps = range(2, n + 1)
        gates = self._gates(pre)
        out_v = [torch.empty_like(m.weight) for m in self.feedback]
        out_c = [torch.empty_like(m.bias) for m in self.feedback]
        _, _, total = target_prop_feedback_grads(
            "ldrl" if self.variant == "ldrl" else "dtp", [hs[l - 1] for l in maps], [hs[l] for l in maps], gates,
            [weights[l - 1] for l in maps], [biases[l - 1] for l in maps], [self.kinds[l - 1] for l in maps],
            [self.slopes[l - 1] for l in maps], [m.weight.detach() for m in self.feedback],
            [m.bias.detach() for m in self.feedback], noise_in,
            noise_out if self.variant == "ldrl" else None, out_v, out_c)
        self.last_feedback_loss = total
        for m, gv, gc in zip(self.feedback, out_v, out_c):
            for p, g in ((m.weight, gv), (m.bias, gc)):
                add_to_grad(p, g, owned=True)
        return params

    def _conv_feedback_grads(self, params, hs, pre):
        """The conv path's feedback gradients: autograd through the reference's
        layer-wise losses (localgrad.reference.target_prop.layerwise_feedback_losses)."""
        batch, s, n = hs[0].shape[0], self.samples, len(self.layers)

        def rep(t):
            return t.repeat(s, *[1] * (t.dim() - 1)) if s > 1 else t

        noise_in = self._noise([tuple(hs[l - 1].shape[1:]) for l in range(2, n + 1)], batch, hs[0])
        noise_out = (self._noise([tuple(hs[l].shape[1:]) for l in range(2, n + 1)], batch, hs[0])
                     if self.variant == "ldrl" else [None] * (n - 1))
        gates = self._gates(pre) or [None] * (n - 1)
        maps = [
            (lambda h, l=l, gate=None if gates[l - 2] is None else rep(gates[l - 2]):
             conv.apply_map(self.layers[l - 1], self.layers[l - 2], self.feedback[l - 2], h, hs[l - 1].shape, gate,
                            detach=False))
            for l in range(2, n + 1)
        ]
        with torch.enable_grad():
            losses = ref.layerwise_feedback_losses(
                self.variant, [rep(hs[l - 1]) for l in range(2, n + 1)], [rep(hs[l]) for l in range(2, n + 1)],
                self.layers[1:], maps, noise_in, noise_out)
            total = sum(losses) / max(batch * s, 1)
            grads = torch.autograd.grad(total, params, allow_unused=True)
        self.last_feedback_loss = total.detach()
        for p, g in zip(params, grads):
            add_to_grad(p, torch.zeros_like(p) if g is None else g)
        return params

    def _targets(self, weights, biases, hs, pre, t_out):
        if self.layers is not None:
            gates = self._gates(pre) or [None] * len(self.feedback)
            inverses = [
                (lambda h, l=l, gate=gates[l - 2]:
                 conv.apply_map(self.layers[l - 1], self.layers[l - 2], self.feedback[l - 2], h, hs[l - 1].shape,
                                gate, detach=True))
                for l in range(2, len(self.layers) + 1)
            ]
            return ref.tp_targets(hs, t_out, inverses, difference=self.variant != "tp")
        if self.variant == "gait":
            return ref.gait_targets(hs, pre, t_out, weights, biases, self.kinds, self.slopes, self.gamma)
        if self.variant == "ddtp":
            return ref.ddtp_targets(hs, t_out, [m.weight.detach() for m in self.feedback])
        gates = self._gates(pre) or [None] * len(self.feedback)
        if self.closed_form and self.variant != "tp":
            return self._difference_targets(hs, t_out, gates)
        inverses = [
            (lambda h, m=m, k=self.kinds[i], s=self.slopes[i], gate=gates[i]:
             ref.feedback(h, m.weight.detach(), m.bias.detach(), k, s, gate))
            for i, m in enumerate(self.feedback)
        ]
        return ref.tp_targets(hs, t_out, inverses, difference=self.variant != "tp")

    def _difference_targets(self, hs, t_out, gates):
        """DTP's t_{l-1} = h_{l-1} + g_l(t_l) - g_l(h_l) (ref.tp_targets) with g_l
        applied once: for maps linear in h the difference is one product,
        ((t_l - h_l) * q) V^T (c cancels); otherwise g_l runs on [t_l; h_l]
        stacked into one product."""
        n = len(hs) - 1
        targets = [None] * n
        targets[-1] = t_out
        linear = self._linear_maps()
        for l in range(n, 1, -1):
            m, gate = self.feedback[l - 2], gates[l - 2]
            v, c = m.weight.detach(), m.bias.detach()
            t, h = targets[l - 1], hs[l]
            if linear:
                d = t - h if gate is None else (t - h) * gate
                targets[l - 2] = hs[l - 1] + d @ v.T
                continue
            both = ref.feedback(torch.cat([t, h]), v, c, self.kinds[l - 2], self.slopes[l - 2])
            targets[l - 2] = hs[l - 1] + both[: t.shape[0]] - both[t.shape[0]:]
        return targets

    @torch.no_grad()
    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_replicated([*self.model.parameters(), *self.feedback_parameters()], self.name)
        x0 = self._input(x)
        target = self._target(y, x0.shape[0])
        weights, biases, hs, pre = self._forward(x0)
        loss = ref.loss_value(hs[-1], target, self.loss)
        # The feedback learns from this batch; the targets use its values before the optimizer's step.
        written = self._feedback_grads(weights, biases, hs, pre)
        t_out = ref.output_target(hs[-1], target, self.beta, self.loss)
        targets = self._targets(weights, biases, hs, pre, t_out)
        scales = ref.target_scales(self.variant, len(pre), self.beta, self.gamma)
        if self.layers is None:
            modules = self.linears
            grads = ref.forward_gradients(hs, pre, targets, self.kinds, self.slopes, scales)
        else:
            modules = [layer.module for layer in self.layers]
            # Leaves of their own: autograd needs them to require grad, a
            # frozen layer's parameter does not (its .grad is skipped below).
            leaves = [(m.weight.detach().requires_grad_(), m.bias.detach().requires_grad_()) for m in modules]
            pre_fns = [(lambda h, layer=layer, wb=wb: layer.pre(h, *wb)) for layer, wb in zip(self.layers, leaves)]
            grads = ref.module_forward_gradients(
                pre_fns, leaves, hs, pre, targets, self.kinds, self.slopes, scales)
        if self.ortho:
            for l in range(1, len(weights)):
                w = weights[l]
                gram = w.T @ w - torch.eye(w.shape[1], dtype=w.dtype, device=w.device)
                grads[l] = (grads[l][0] + self.ortho * (w @ gram), grads[l][1])
        for m, (gw, gb) in zip(modules, grads):
            for param, g in ((m.weight, gw), (m.bias, gb)):
                if add_to_grad(param, g, owned=True):
                    written.append(param)
        average_gradients(written, self.process_group)
        return loss

    @torch.no_grad()
    def train_feedback(self, x: torch.Tensor, optimizer: torch.optim.Optimizer | None = None,
                       iterations: int = 1) -> torch.Tensor:
        """The feedback's .grad only (feedback warm-up before training, as
        Meulemans 2020 and Ernoult 2022 do); returns the batch-mean feedback
        loss. With `optimizer` (over the feedback parameters), runs
        `iterations` updates on this batch (zero_grad, .grad, step), the
        forward pass made once: the published per-batch feedback iterations
        (Ernoult 2022: 20 to 55 per layer)."""
        check_replicated([*self.model.parameters(), *self.feedback_parameters()], self.name)
        iterations = as_int(iterations, "TargetProp", "iterations")
        if iterations < 1 or (optimizer is None and iterations != 1):
            raise ValueError(f"TargetProp: iterations must be >= 1, and > 1 only with an optimizer; got {iterations}")
        x0 = self._input(x)
        weights, biases, hs, pre = self._forward(x0)
        self.last_feedback_loss = hs[0].new_zeros(())
        for _ in range(iterations):
            if optimizer is not None:
                optimizer.zero_grad()
            average_gradients(self._feedback_grads(weights, biases, hs, pre), self.process_group)
            if optimizer is not None:
                with torch.enable_grad():
                    optimizer.step()
        return self.last_feedback_loss

