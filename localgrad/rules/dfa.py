"""Direct Feedback Alignment as a training rule for a converted model.

Nøkland, "Direct Feedback Alignment Provides Learning in Deep Neural Networks",
NeurIPS 2016. The output layer learns from its true gradient; every hidden
layer l from the output error e = dL/dy sent straight to it through a fixed
random matrix B_l (n_out, width_l), entering after the layer's activation:

    delta_l = (e @ B_l) * f'(a_l),    dW_l = delta_l^T x_l,    db_l = sum_batch delta_l.

How it runs inside a user's unchanged `loss.backward()`: every converted layer
computes its forward from a detached input, so autograd never sweeps back
through the hidden layers; the output's gradient hook receives e and, in one
fused `dfa_project` call, produces every hidden delta, from which the weight
gradients are accumulated into `.grad` like autograd would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from localgrad import activations as act
from localgrad import ops
from localgrad.nn.dfa_linear import DFALinear


@dataclass
class _Tape:
    """What one forward pass leaves for its backward: per hidden layer, its
    input and its activation's output (and kind)."""

    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)  # h_l = f(a_l), None for identity
    kinds: list = field(default_factory=list)
    slopes: list = field(default_factory=list)
    last_output: torch.Tensor | None = None  # a_l of the hidden layer that ran last
    expected_input: torch.Tensor | None = None  # what the next layer must be fed


class DirectFeedbackAlignment:
    """The DFA rule attached to a converted model (see `localgrad.convert`).

    hidden: the hidden DFALinear layers in forward order; output: the output
    layer. Their feedback buffers are column blocks of one (n_out, sum of
    widths) matrix, so the fused op reads them without a copy.
    """

    def __init__(self, hidden: list[DFALinear], output: DFALinear, seed: int = 0, feedback_scale: float = 1.0):
        self.hidden = hidden
        self.output = output
        self.n_out = output.out_features
        self.widths = [layer.out_features for layer in hidden]
        self._tape: _Tape | None = None
        self._bank: torch.Tensor | None = None
        self._hooks = []
        for index, layer in enumerate([*hidden, output]):
            layer.dfa_rule = self
            layer.dfa_index = index
        self._init_feedback(seed, feedback_scale)

    # Feedback matrices -------------------------------------------------

    def _init_feedback(self, seed: int, scale: float) -> None:
        """B_l ~ U(-s, s) with s = scale / sqrt(width_l): the init of an
        nn.Linear(width_l, n_out), the shape of weight that backprop would
        send e through, so DFA's signal starts at backprop's scale."""
        generator = torch.Generator().manual_seed(seed)
        blocks = []
        for width in self.widths:
            bound = scale / math.sqrt(max(width, 1))
            blocks.append((torch.rand(self.n_out, width, generator=generator, dtype=torch.float64) * 2 - 1) * bound)
        ref = self.output.weight
        bank = torch.cat(blocks, dim=1) if blocks else torch.empty(self.n_out, 0, dtype=torch.float64)
        self._install_bank(bank.to(device=ref.device, dtype=ref.dtype))

    def _install_bank(self, bank: torch.Tensor) -> None:
        self._bank = bank
        offset = 0
        for layer, width in zip(self.hidden, self.widths):
            view = bank[:, offset : offset + width]
            if "feedback" in layer._buffers:
                layer._buffers["feedback"] = view
            else:
                layer.register_buffer("feedback", view)
            offset += width

    def feedback_bank(self) -> torch.Tensor:
        """The (n_out, sum of widths) feedback matrix, rebuilt if a layer's
        `feedback` stopped being a view of it (after .to(), or an assignment)."""
        bank = self._bank
        if bank is not None and bank.is_contiguous():
            offset, intact = 0, True
            for layer, width in zip(self.hidden, self.widths):
                fb = layer.feedback
                if (
                    fb.device != bank.device
                    or fb.dtype != bank.dtype
                    or fb.shape != (self.n_out, width)
                    or fb.stride() != (bank.stride(0), 1)
                    or fb.data_ptr() != bank.data_ptr() + offset * bank.element_size()
                ):
                    intact = False
                    break
                offset += width
            if intact:
                return bank
        for layer, width in zip(self.hidden, self.widths):
            if layer.feedback.shape != (self.n_out, width):
                raise ValueError(
                    f"DFA: feedback of a layer with {width} units must have shape "
                    f"({self.n_out}, {width}), got {tuple(layer.feedback.shape)}"
                )
        self._install_bank(torch.cat([layer.feedback for layer in self.hidden], dim=1).contiguous())
        return self._bank

    # Forward: record what the backward needs -----------------------------

    def observe_activation(self, module: nn.Module, inputs, output) -> None:
        """Forward hook on the model's activation modules: notes which
        activation the last hidden layer's output went through."""
        tape = self._tape
        if tape is None or tape.last_output is None or not inputs or inputs[0] is not tape.last_output:
            return
        kind, slope = act.from_module(module)
        tape.kinds[-1], tape.slopes[-1] = kind, slope
        tape.expected_input = output
        tape.last_output = None

    def forward_layer(self, layer: DFALinear, x: torch.Tensor) -> torch.Tensor:
        index = layer.dfa_index
        is_output = layer is self.output
        if index == 0:
            self._tape = _Tape()
        tape = self._tape
        if index > 0:
            if tape is None or len(tape.inputs) != index:
                raise RuntimeError(
                    f"DFA: layer {index} ran out of order; convert(rule='dfa') expects the model's "
                    "nn.Linear layers to run once each, in the order they were registered"
                )
            if x is not tape.expected_input:
                raise RuntimeError(
                    f"DFA: the input of layer {index} is not the previous layer's output passed "
                    "through one activation module. DFA needs each hidden layer's activation: use "
                    "modules (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Identity) rather than "
                    "functional calls, with no other operation between the Linear layers"
                )
            # An identity layer needs no tensor: its derivative is 1.
            if tape.kinds[-1] != act.Activation.IDENTITY:
                tape.outputs[-1] = x.detach()
        x = x.detach()
        if is_output:
            self._tape = None
            y = F.linear(x, layer.weight, layer.bias)
            if self.hidden and y.requires_grad:
                y.register_hook(lambda e, tape=tape: self._backward(tape, e))
            return y
        tape.inputs.append(x)
        with torch.no_grad():  # no graph: hidden layers never see autograd
            y = F.linear(x, layer.weight, layer.bias)
        tape.outputs.append(None)
        tape.kinds.append(act.Activation.IDENTITY)
        tape.slopes.append(0.0)
        tape.last_output = y
        tape.expected_input = y
        return y

    # Backward: one fused projection, then the weight-gradient GEMMs --------

    def _backward(self, tape: _Tape, error: torch.Tensor) -> None:
        error = error.reshape(-1, self.n_out)
        bank = self.feedback_bank()
        dtype = error.dtype
        outputs = [None if h is None else h.reshape(-1, h.shape[-1]).to(dtype) for h in tape.outputs]
        deltas = ops.dfa_project(
            error, bank.to(dtype), outputs, tape.kinds, tape.slopes, widths=self.widths
        )
        for layer, x, delta in zip(self.hidden, tape.inputs, deltas):
            x = x.reshape(-1, layer.in_features).to(dtype)
            _accumulate(layer.weight, delta.t() @ x)
            if layer.bias is not None:
                _accumulate(layer.bias, delta.sum(0))

    def remove_hooks(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()


def _accumulate(param: torch.Tensor, grad: torch.Tensor) -> None:
    """Adds to .grad the way autograd does: creates it on first use."""
    grad = grad.to(param.dtype)
    if param.grad is None:
        param.grad = grad
    else:
        param.grad.add_(grad)
