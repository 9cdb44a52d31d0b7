"""TargetProp on strided-conv nets: nn.Sequential of Conv2d layers (no
pooling), Flatten, then Linear layers, each layer followed by at most one
activation. The feedback of a Conv2d layer is a ConvTranspose2d of the
same geometry (Ernoult et al. 2022), its output padding chosen at each call
so that it maps h_l back to h_{l-1}'s exact shape, followed by the
feedback's activation (or gated, feedback="gated"); Flatten's feedback is
the reshape. Variants tp, dtp, ldrl. The feedback losses, targets and
forward updates are the reference's equations (localgrad.reference.
target_prop, "Strided-conv nets") with their gradients by autograd: no
fused op on this path."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from localgrad import activations
from localgrad.activations import Activation
from localgrad.reference import target_prop as ref
from localgrad.learner import UnsupportedModelError

CONV_VARIANTS = ("tp", "dtp", "ldrl")
_INPUT_MODULES = (nn.Flatten, nn.Identity, nn.Unflatten)


class Layer:
    """One forward layer: its module (Conv2d or Linear), the activation after
    it, and whether a Flatten comes before it."""

    def __init__(self, module: nn.Module, flat: bool):
        self.module, self.flat = module, flat
        self.kind, self.slope = int(Activation.IDENTITY), 0.0

    @property
    def conv(self) -> bool:
        return isinstance(self.module, nn.Conv2d)

    def pre(self, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """a_l from h_{l-1}."""
        if self.conv:
            return F.conv2d(h, weight, bias, self.module.stride, self.module.padding)
        if self.flat:
            h = h.flatten(1)
        return F.linear(h, weight, bias)

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        """f_l(h) with the weights held fixed."""
        a = self.pre(h, self.module.weight.detach(), self.module.bias.detach())
        return activations.apply(a, self.kind, self.slope)


def has_conv(model) -> bool:
    return isinstance(model, nn.Sequential) and any(isinstance(m, nn.Conv2d) for m in model)


def _check_conv(i: int, m: nn.Conv2d) -> None:
    where = f"TargetProp: model[{i}] (Conv2d)"
    if m.bias is None:
        raise ValueError(f"{where} has no bias; give it bias=True")
    if m.groups != 1:
        raise ValueError(f"{where} has groups={m.groups}; only groups=1 is supported")
    if any(d != 1 for d in m.dilation):
        raise ValueError(f"{where} has dilation={m.dilation}; only dilation 1 is supported")
    if isinstance(m.padding, str):
        raise ValueError(f"{where} has padding={m.padding!r}; give the padding as numbers")
    if m.padding_mode != "zeros":
        raise ValueError(f"{where} has padding_mode={m.padding_mode!r}; only 'zeros' is supported")


def parse(model: nn.Sequential) -> tuple[list[nn.Module], list[Layer]]:
    """(input modules, layers) of a strided-conv net, or a ValueError naming
    the module that is not supported."""
    inputs, layers = [], []
    pending, flat = False, False
    for i, m in enumerate(model):
        name = type(m).__name__
        if "Pool" in name:
            raise UnsupportedModelError(f"TargetProp: model[{i}] is {name}; pooling is not supported on target propagation's "
                             "conv path (use a strided Conv2d)")
        if isinstance(m, nn.Conv2d):
            if layers and not layers[-1].conv or flat:
                raise UnsupportedModelError(f"TargetProp: model[{i}] is a Conv2d after the Flatten/Linear layers; the conv "
                                 "path takes Conv2d layers, then Flatten, then Linear layers")
            _check_conv(i, m)
            layers.append(Layer(m, False))
            pending = False
            continue
        if isinstance(m, nn.Linear):
            if m.bias is None:
                raise UnsupportedModelError(f"TargetProp: model[{i}] is a Linear without bias; give it bias=True")
            if layers and layers[-1].conv and not flat:
                raise UnsupportedModelError(f"TargetProp: model[{i}] is a Linear right after a Conv2d; put an nn.Flatten "
                                 "between them")
            layers.append(Layer(m, flat and layers[-1].conv))
            pending = False
            continue
        if not layers:
            if isinstance(m, _INPUT_MODULES):
                inputs.append(m)
                continue
            raise UnsupportedModelError(f"TargetProp: model[{i}] ({name}) comes before the first Conv2d; only "
                             "Flatten/Unflatten/Identity may act on the input")
        if isinstance(m, nn.Identity):
            continue
        if isinstance(m, nn.Flatten):
            if flat or not layers[-1].conv or m.start_dim != 1 or m.end_dim != -1:
                raise UnsupportedModelError(f"TargetProp: model[{i}] is a Flatten that is not the one nn.Flatten() between "
                                 "the Conv2d and the Linear layers")
            flat = True
            continue
        act = activations.from_module(m)
        if act is None or pending or flat and layers[-1].conv:
            what = "a second activation after one layer" if act is not None else name
            raise UnsupportedModelError(f"TargetProp: model[{i}] is {what}; the conv path takes Conv2d and Linear layers, each "
                             "followed by at most one of ReLU, LeakyReLU, Tanh, Sigmoid, Identity (before Flatten)")
        layers[-1].kind, layers[-1].slope = int(act[0]), float(act[1])
        pending = True
    if not layers or layers[-1].conv:
        raise UnsupportedModelError("TargetProp: a conv model must end with an nn.Linear layer (the output)")
    return inputs, layers


def make_feedback(layers: list[Layer], generator: torch.Generator, linear_map) -> list[nn.Module]:
    """g_2..g_L: a ConvTranspose2d (weight shaped like the Conv2d's) for a conv
    layer, linear_map(n_in, n_out) for a Linear one; initialised from the
    learner's generator, uniform(+-1/sqrt(fan-in of the map))."""
    maps = []
    for layer in layers[1:]:
        m = layer.module
        w = m.weight
        if layer.conv:
            # Made on the meta device (its own initialisation draws nothing from torch's global generator),
            # then filled from the learner's.
            t = nn.ConvTranspose2d(m.out_channels, m.in_channels, m.kernel_size, m.stride, m.padding, bias=True,
                                   dtype=w.dtype, device="meta").to_empty(device=w.device)
            bound = 1 / math.sqrt(m.out_channels * m.kernel_size[0] * m.kernel_size[1])
            with torch.no_grad():
                t.weight.uniform_(-bound, bound, generator=generator)
                t.bias.uniform_(-bound, bound, generator=generator)
            maps.append(t)
        else:
            maps.append(linear_map(m.in_features, m.out_features))
    return maps


def apply_map(layer: Layer, prev: Layer, fb: nn.Module, h: torch.Tensor, shape: torch.Size,
              gate: torch.Tensor | None, detach: bool) -> torch.Tensor:
    """g_l(h), l the layer `layer` (prev: layer l-1, whose activation the
    papers' form applies), shape: h_{l-1}'s (batch first ignored)."""
    v, c = (fb.weight.detach(), fb.bias.detach()) if detach else (fb.weight, fb.bias)
    if layer.conv:
        m = layer.module
        return ref.conv_feedback(h, v, c, m.stride, m.padding, shape[-2:], prev.kind, prev.slope, gate)
    out = ref.feedback(h, v, c, prev.kind, prev.slope, gate)
    return out.reshape(h.shape[0], *shape[1:])


def forward(layers: list[Layer], x0: torch.Tensor):
    """([h_0, ..., h_L], [a_1, ..., a_L]) with the weights held fixed."""
    hs, pre = [x0], []
    for layer in layers:
        a = layer.pre(hs[-1], layer.module.weight.detach(), layer.module.bias.detach())
        pre.append(a)
        hs.append(activations.apply(a, layer.kind, layer.slope))
    return hs, pre
