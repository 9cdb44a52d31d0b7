"""Direct Feedback Alignment as a training rule for a converted model.

Nøkland, "Direct Feedback Alignment Provides Learning in Deep Neural Networks",
NeurIPS 2016. The output layer learns from its true gradient; every hidden
layer l from the output error e = dL/dy sent straight to it through a fixed
random matrix B_l (n_out, width_l), entering after the layer's activation:

    delta_l = (e @ B_l) * f'(a_l),    dW_l = delta_l^T x_l,    db_l = sum_batch delta_l.

How it runs inside a user's unchanged `loss.backward()`: every converted layer
computes its forward from a detached input, so autograd never sweeps back
through the hidden layers. The output passes through an identity autograd
node (`_Broadcast`) that takes the hidden layers' weights and biases as
inputs: its backward receives e and, in one fused `dfa_project` call,
produces every hidden delta and from them the weight gradients, which it
returns through the graph. Autograd accumulates them into `.grad`, so
DistributedDataParallel (default arguments), its `no_sync()`, FSDP2 and
gradient hooks see them like any other gradient.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from localgrad import activations as act
from localgrad import ops


@dataclass
class _Tape:
    """What one forward pass leaves for its backward: per hidden layer, its
    input and, when an activation module was applied to its output, that
    module's output and kind."""

    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)  # h_l = f(a_l), None: error enters at a_l
    kinds: list = field(default_factory=list)
    slopes: list = field(default_factory=list)
    last_output: torch.Tensor | None = None  # a_l of the last hidden layer, until an activation takes it
    last_raw: torch.Tensor | None = None  # a_l of the last hidden layer
    unknown: list = field(default_factory=list)  # layers whose output went through unknown operations
    rows: list = field(default_factory=list)  # output rows (samples) of each hidden layer
    # Weight and bias of each hidden layer as its forward saw them (under FSDP2,
    # the unsharded parameters, into which autograd must accumulate).
    params: list = field(default_factory=list)


class DirectFeedbackAlignment:
    """The DFA rule attached to a converted model (see `localgrad.convert`).

    hidden: the hidden DFALinear / DFAConv2d layers in forward order; output:
    the output layer; names: all their names, for messages. Hidden layers'
    feedback buffers are column blocks of one (n_out, sum of widths) matrix,
    so the fused op reads them without a copy. inject: "activation" (the error
    enters after an activation module applied directly to the layer's output,
    as in Nøkland 2016) or "output" (it enters at the layer's output).
    """

    def __init__(
        self,
        hidden: list,
        output: nn.Module,
        names: list[str],
        seed: int = 0,
        feedback_scale: float | None = None,
        inject: str = "activation",
        rule: str = "dfa",
    ):
        if inject not in ("activation", "output"):
            raise ValueError(f"DFA: inject must be 'activation' or 'output', got {inject!r}")
        self.hidden = hidden
        self.output = output
        self.names = names
        self.inject = inject
        self.rule = rule  # "dfa", or "ba" (the same broadcast; see localgrad.convert)
        self.n_out = output.out_features if isinstance(output, nn.Linear) else output.out_channels
        self.widths = [layer.dfa_width for layer in hidden]
        self._tape: _Tape | None = None
        self._bank: torch.Tensor | None = None
        self._hooks = []
        self._warned_no_activation = False
        self._in_model_forward = False  # set by convert's hooks on the model
        for index, layer in enumerate([*hidden, output]):
            layer.dfa_rule = self
            layer.dfa_index = index
        self._init_feedback(seed, feedback_scale)

    # Feedback matrices -------------------------------------------------

    def _init_feedback(self, seed: int, scale: float | None) -> None:
        """B_l ~ U(-s, s), by default s = 1/sqrt(width_l): the init of an
        nn.Linear(width_l, n_out), the shape of weight that backprop would
        send e through, so DFA's signal starts at backprop's scale. (For a
        conv layer width_l is its whole output map, C*H*W.)"""
        generator = torch.Generator().manual_seed(seed)
        blocks = []
        for width in self.widths:
            bound = 1.0 / math.sqrt(max(width, 1)) if scale is None else float(scale)
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
        """Forward hook on the model's activation modules: notes the
        activation applied directly to the last hidden layer's output."""
        tape = self._tape
        if tape is None or tape.last_output is None or not inputs or inputs[0] is not tape.last_output:
            return
        tape.kinds[-1], tape.slopes[-1] = act.from_module(module)
        tape.outputs[-1] = output.detach()
        tape.last_output = None

    def begin_model_forward(self, module: nn.Module, args) -> None:
        """Forward pre-hook on the converted model: a new forward, a new tape."""
        self._tape = None
        self._in_model_forward = True

    def end_model_forward(self, module: nn.Module, args, output) -> None:
        self._in_model_forward = False

    def forward_layer(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        index = layer.dfa_index
        if index == 0:
            if self._in_model_forward and self._tape is not None:
                # Starting a new tape would drop the first call's credit.
                raise RuntimeError(
                    f"DFA: layer {self.names[0]!r} ran twice in one forward; convert(rule='dfa') expects "
                    "the model's Linear/Conv2d layers to run once each, in the order they were registered"
                )
            self._tape = _Tape()
        tape = self._tape
        if index > 0 and (tape is None or len(tape.inputs) != index):
            raise RuntimeError(
                f"DFA: layer {self.names[index]!r} ran out of order; convert(rule='dfa') expects the "
                "model's Linear/Conv2d layers to run once each, in the order they were registered"
            )
        if index > 0 and tape.outputs[-1] is None and x is not tape.last_raw:
            tape.unknown.append(index - 1)  # neither an activation module nor nothing in between
        tape.last_output = None
        x = x.detach()  # no backward sweep through the layers below
        if layer is self.output:
            self._tape = None
            tape.last_raw = None  # the backward needs it no more than the forward does
            self._warn_missing_activations(tape)
            y = layer.dfa_compute(x)
            if self.hidden and (y.requires_grad or any(p.requires_grad for p in tape.params)):
                y = _Broadcast.apply(self, tape, y, *tape.params)
            return y
        tape.inputs.append(x)
        tape.params.extend(p for p in (layer.weight, layer.bias) if p is not None)
        with torch.no_grad():  # no graph: hidden layers never see autograd
            y = layer.dfa_compute(x)
        tape.rows.append(y.numel() // max(layer.dfa_width, 1))
        tape.outputs.append(None)
        tape.kinds.append(act.Activation.IDENTITY)
        tape.slopes.append(0.0)
        tape.last_raw = y
        if self.inject == "activation":
            tape.last_output = y
        return y

    def _warn_missing_activations(self, tape: _Tape) -> None:
        if self.inject != "activation" or self._warned_no_activation:
            return
        missing = [self.names[i] for i in tape.unknown]
        if missing:
            warnings.warn(
                "DFA: no activation module (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Identity) "
                f"is applied directly to the output of {', '.join(missing)}; their error enters at the "
                "layer output (f' = 1). Use activation modules, not functional calls, for the "
                "error to enter after the activation.",
                UserWarning,
                stacklevel=2,
            )
            self._warned_no_activation = True

    # Backward: one fused projection, then the weight-gradient GEMMs --------

    def hidden_gradients(self, tape: _Tape, error: torch.Tensor) -> list[torch.Tensor]:
        """The DFA gradients of `tape.params` (every hidden layer's weight and
        bias, in order), in their dtypes, for the output error (dL/dy) of the
        forward that left `tape`."""
        error = error.reshape(-1, self.n_out)
        rows = error.shape[0]
        for name, layer_rows in zip(self.names, tape.rows):
            if layer_rows != rows:
                raise RuntimeError(
                    f"DFA: layer {name!r} produced {layer_rows} rows (samples) but the output has {rows}; "
                    "DFA sends each output row's error to the matching row of every hidden layer"
                )
        bank = self.feedback_bank()
        dtype = error.dtype
        outputs = [None if h is None else h.reshape(rows, w).to(dtype) for h, w in zip(tape.outputs, self.widths)]
        deltas = ops.dfa_project(error, bank.to(dtype), outputs, tape.kinds, tape.slopes, widths=self.widths)
        grads = []
        for layer, x, delta in zip(self.hidden, tape.inputs, deltas):
            grad_w, grad_b = layer.dfa_weight_grads(delta, x.to(dtype))
            grads.extend(g for g in (grad_w, grad_b) if g is not None)
        return [g.to(p.dtype) for g, p in zip(grads, tape.params)]

    def remove_hooks(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()


class _Broadcast(torch.autograd.Function):
    """Identity on the output y; its backward sends dL/dy on unchanged and
    returns the DFA gradients of the hidden layers' parameters (its other
    inputs), so autograd itself delivers them."""

    @staticmethod
    def forward(ctx, rule: DirectFeedbackAlignment, tape: _Tape, y: torch.Tensor, *params: torch.Tensor):
        ctx.rule, ctx.tape = rule, tape
        return y.clone()  # not a view: the caller may modify the output in place

    @staticmethod
    def backward(ctx, error: torch.Tensor):
        wanted = ctx.needs_input_grad[3:]
        grads = ctx.rule.hidden_gradients(ctx.tape, error) if any(wanted) else [None] * len(wanted)
        grads = [g if need else None for g, need in zip(grads, wanted)]
        return None, None, error if ctx.needs_input_grad[2] else None, *grads
