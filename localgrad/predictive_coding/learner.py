"""PredictiveCoding: trains a stock nn.Sequential MLP by prediction-error
inference (Whittington & Bogacz 2017) and its exact or incremental variants
(localgrad.reference.predictive_coding states the maths).

    learner = PredictiveCoding(model, variant="zil", loss="ce")
    optimizer.zero_grad()
    loss = learner.step(x, y)      # inference, then minus the update in .grad
    optimizer.step()

The model stays an ordinary module: its forward pass is the PC prediction
with nothing clamped (the feed-forward pass), so evaluation, saving and
torch.compile see the user's own network.
"""

from __future__ import annotations

import torch
from torch import nn

from localgrad import activations, ops
from localgrad.distributed import average_gradients, check_replicated, world_size
from localgrad._checks import as_float, as_int
from localgrad.predictive_coding import generic
from localgrad.reference import predictive_coding as ref
from localgrad.training import one_hot_targets
from localgrad.learner import UnsupportedModelError, add_to_grad

VARIANTS = tuple(ref.VARIANTS)
LOSSES = tuple(ref.LOSSES)
# Input-side modules allowed before the first Linear (they act on the clamped x_0).
_INPUT_MODULES = (nn.Flatten, nn.Identity, nn.Unflatten)


def _parse(model: nn.Sequential):
    """(input modules, Linear layers, kinds, slopes): kinds[l] is the
    activation between layer l and l+1 (kinds[0] = identity on the input)."""
    if not isinstance(model, nn.Sequential):
        raise UnsupportedModelError(f"PredictiveCoding: model must be an nn.Sequential, got {type(model).__name__}")
    inputs, linears, kinds, slopes = [], [], [], []
    pending = None
    for i, m in enumerate(model):
        if isinstance(m, nn.Linear):
            if m.bias is None:
                raise UnsupportedModelError(f"PredictiveCoding: model[{i}] is a Linear without bias; give it bias=True")
            kind, slope = pending if pending is not None else (activations.Activation.IDENTITY, 0.0)
            kinds.append(int(kind))
            slopes.append(float(slope))
            linears.append(m)
            pending = None
            continue
        if not linears:
            if isinstance(m, _INPUT_MODULES):
                inputs.append(m)
                continue
            raise ValueError(
                f"PredictiveCoding: model[{i}] ({type(m).__name__}) comes before the first Linear; only "
                "Flatten/Unflatten/Identity may act on the input"
            )
        if isinstance(m, nn.Identity) or (isinstance(m, nn.Dropout) and m.p == 0):
            continue
        act = activations.from_module(m)
        if act is None or pending is not None:
            what = "a second activation" if act is not None else type(m).__name__
            raise ValueError(
                f"PredictiveCoding: model[{i}] is {what}; between two Linear layers takes one of "
                "ReLU, LeakyReLU, Tanh, Sigmoid, Identity (Conv2d models are not supported yet)"
            )
        pending = act
    if not linears:
        raise UnsupportedModelError("PredictiveCoding: model has no nn.Linear layer")
    if pending is not None:
        raise UnsupportedModelError("PredictiveCoding: the model must end with a Linear layer (its output is the prediction mu_L)")
    return inputs, linears, kinds, slopes


class PredictiveCoding:
    """Predictive coding learner for `model`, an nn.Sequential of Linear
    layers with one activation module between two of them (and Flatten in
    front): the fused ops; or one with Conv2d layers (and parameter-free
    modules between the layers, ending in a Linear): the same maths through
    autograd per block (localgrad.predictive_coding.generic).

    variant: "il" (inference learning: `steps` steps of size `gamma`, then
    the update at the final state; defaults 20 and 0.1), "fpa" (fixed
    predictions; defaults gamma 1 and steps = number of layers, where it
    equals backprop), "zil" (Z-IL: gamma 1, feed-forward start, layer l's
    update read at step L-l; steps and gamma default to that and then equal
    backprop), "ipc" (incremental PC: the weights also move by `ipc_lr` times
    the batch-mean update at every step; defaults 20 and 0.1; that inner
    step is plain SGD, and a Conv2d weight's update sums over its output
    positions: the demo's LeNet needs ipc_lr <= 0.002, it takes 0.001).
    loss: "mse" (the output clamped to the target, 1/2 ||mu_L - y||^2 summed
    over outputs) or "ce" (the cross-entropy of softmax(mu_L) as the output
    energy). Integer class labels become one-hot targets.

    `step(x, y)` adds minus the update to every parameter's `.grad` (for
    iPC: minus the sum of its per-step updates, so SGD with lr = ipc_lr
    moves the weights as iPC's inner loop did) and returns the batch-mean
    loss of the feed-forward prediction.
    """

    def __init__(self, model: nn.Sequential, variant: str = "il", steps: int | None = None,
                 gamma: float | None = None, loss: str = "mse", ipc_lr: float = 0.01):
        op = "PredictiveCoding"
        if variant not in VARIANTS:
            raise ValueError(f"PredictiveCoding: variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        if loss not in LOSSES:
            raise ValueError(f"PredictiveCoding: loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        self.model = model
        if not isinstance(model, nn.Sequential):
            raise UnsupportedModelError(f"PredictiveCoding: model must be an nn.Sequential, got {type(model).__name__}")
        # Models with Conv2d run the autograd-per-block path; MLPs the fused op.
        self.blocks = generic.parse_blocks(model)
        if self.blocks is None:
            self.inputs, self.linears, self.kinds, self.slopes = _parse(model)
        else:
            self.inputs, self.linears, self.kinds, self.slopes = [], [b.layer for b in self.blocks], None, None
        n_layers = len(self.linears)
        default_steps = {"il": 20, "ipc": 20, "fpa": n_layers, "zil": n_layers - 1}[variant]
        default_gamma = {"il": 0.1, "ipc": 0.1, "fpa": 1.0, "zil": 1.0}[variant]
        self.steps = default_steps if steps is None else as_int(steps, op, "steps", minimum=0)
        self.gamma = default_gamma if gamma is None else as_float(gamma, op, "gamma")
        # Only iPC reads ipc_lr, but a NaN or a string is a mistake whatever the variant.
        ipc_lr = as_float(ipc_lr, op, "ipc_lr")
        if variant == "ipc" and not ipc_lr > 0:
            raise ValueError(f"PredictiveCoding: ipc_lr must be > 0, got {ipc_lr}")
        self.variant, self.loss, self.ipc_lr = variant, loss, ipc_lr

    def __repr__(self) -> str:
        return (f"PredictiveCoding(variant={self.variant!r}, steps={self.steps}, gamma={self.gamma}, "
                f"loss={self.loss!r}, layers={len(self.linears)})")

    @property
    def n_layers(self) -> int:
        return len(self.linears)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        if self.blocks is not None:
            w = self.linears[0].weight
            if x.dtype != w.dtype or x.device != w.device:
                raise TypeError(f"PredictiveCoding: x must be {w.dtype} on {w.device} like the weights, got "
                                f"{x.dtype} on {x.device}")
            return x
        for m in self.inputs:
            x = m(x)
        w = self.linears[0].weight
        if x.dim() != 2 or x.shape[1] != w.shape[1]:
            raise ValueError(f"PredictiveCoding: x must give (batch, {w.shape[1]}) features, got {tuple(x.shape)}")
        if x.dtype != w.dtype or x.device != w.device:
            raise TypeError(f"PredictiveCoding: x must be {w.dtype} on {w.device} like the weights, got "
                            f"{x.dtype} on {x.device}")
        return x.contiguous()

    def _target(self, y: torch.Tensor, batch: int) -> torch.Tensor:
        return one_hot_targets(y, batch, self.linears[-1].weight, "PredictiveCoding")

    def _loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if out.shape[0] == 0:
            return out.new_zeros(())
        if self.loss == "mse":
            return 0.5 * (out - target).pow(2).sum(1).mean()
        return -(target * torch.log_softmax(out, dim=1)).sum(1).mean()

    @torch.no_grad()
    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_replicated(self.model.parameters(), "PredictiveCoding")
        frozen = [p for p in self.model.parameters() if not p.requires_grad]
        if self.variant == "ipc" and frozen and self.blocks is None:
            # The fused op moves every layer inside inference: a frozen
            # layer's working copy would move too and change the others' updates.
            raise ValueError("PredictiveCoding: variant 'ipc' on an MLP moves every layer's weights during "
                             "inference; a model with frozen parameters (requires_grad=False) needs variant 'il', "
                             "or a Conv2d model (whose iPC path holds frozen parameters fixed)")
        if self.variant == "ipc" and world_size() > 1:
            # Its weights move at every inference step by each rank's own
            # batch: the replicas would follow different inner loops.
            raise RuntimeError(
                "PredictiveCoding: variant 'ipc' cannot train data-parallel (it updates the weights inside "
                "inference, from each rank's own samples); use variant 'il' (the same energy, one update per "
                "batch, averaged over the ranks) or train iPC in one process")
        x0 = self._input(x)
        batch = x0.shape[0]
        target = self._target(y, batch)
        if self.blocks is not None:
            return self._step_generic(x0, target)
        weights = [m.weight.detach() for m in self.linears]
        biases = [m.bias.detach() for m in self.linears]
        ff = ref.forward(x0, weights, biases, self.kinds, self.slopes)
        loss = self._loss(ff[-1], target)
        states = [a.contiguous() for a in ff[:-1]]  # fresh tensors: inference overwrites them
        keep_ff = self.variant in ("zil", "fpa")
        pre = [a.clone() for a in states] if keep_ff else states
        scale = -1.0 / max(batch, 1)
        if self.variant == "ipc":
            work_w = [w.clone() for w in weights]
            work_b = [b.clone() for b in biases]
            ops.predictive_coding_infer(
                x0, work_w, work_b, states, target, self.kinds, self.slopes, variant="ipc", loss=self.loss,
                steps=self.steps, gamma=self.gamma, lr=self.ipc_lr / max(batch, 1),
            )
            grads_w = [(w - v).div_(self.ipc_lr) for w, v in zip(weights, work_w)]
            grads_b = [(b - v).div_(self.ipc_lr) for b, v in zip(biases, work_b)]
        else:
            errors = ops.predictive_coding_infer(
                x0, weights, biases, states, target, self.kinds, self.slopes, variant=self.variant,
                loss=self.loss, steps=self.steps, gamma=self.gamma,
            )
            grads_w, grads_b = ops.predictive_coding_update(x0, pre, errors, self.kinds, self.slopes, scale)
        written = []
        for m, gw, gb in zip(self.linears, grads_w, grads_b):
            for param, grad in ((m.weight, gw), (m.bias, gb)):
                if add_to_grad(param, grad, owned=True):
                    written.append(param)
        average_gradients(written)
        return loss

    def _step_generic(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        def output_error(mu):
            return target - (mu if self.loss == "mse" else torch.softmax(mu, dim=1))

        mu_out, updates = generic.infer_and_update(self.blocks, x, output_error, self.variant, self.steps, self.gamma,
                                                   ipc_lr=self.ipc_lr / max(x.shape[0], 1))
        scale = -1.0 / max(x.shape[0], 1)
        written = []
        for block, update in zip(self.blocks, updates):
            for param, u in zip(block.layer.parameters(), update):
                if u is None:  # frozen (requires_grad=False)
                    continue
                add_to_grad(param, u.mul_(scale), owned=True)
                written.append(param)
        average_gradients(written)
        return self._loss(mu_out, target)
