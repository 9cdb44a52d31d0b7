"""DNI: trains a stock nn.Sequential with synthetic gradients at the
interfaces between its blocks (Jaderberg et al. 2017; the maths, BP(λ), in
localgrad.reference.synthetic_gradients).

    learner = DNI(model, conditioned=True)          # cDNI; lam=0.0: BP(0)
    optimizer = torch.optim.Adam([*model.parameters(), *learner.sg_parameters()])
    optimizer.zero_grad()
    loss = learner.step(x, y)      # .grad of the model and of the SG modules
    optimizer.step()

The model stays the user's module: evaluation, saving and torch.compile see
the network itself; the SG modules live in the learner (`state_dict`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from localgrad.distributed import average_gradients, check_replicated
from localgrad._checks import as_bool, as_float, as_int
from localgrad.reference import synthetic_gradients as ref
from localgrad.synthetic_gradients.modules import SyntheticGradient
from localgrad.learner import UnsupportedModelError, add_to_grad

LOSSES = ("ce", "mse")
# Modules after a block's last Linear that keep its output's shape: the
# interface width is then the Linear's out_features, no example input needed.
_SHAPE_KEEPING = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU, nn.SiLU, nn.Identity, nn.Dropout,
                  nn.BatchNorm1d, nn.LayerNorm)


def _has_parameters(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


SPLITS = ("post-activation", "pre-activation")


def named_split(model: nn.Sequential, name: str) -> list[int]:
    """The cuts of a named split. "post-activation": before every module
    with parameters except the first, so each block is one parametric layer
    and the parameter-free modules after it (its activation, pooling), and
    each interface is a layer's activation. "pre-activation": right after
    every module with parameters except the last, so each interface is a
    layer's output before its activation (the parameter-free modules join
    the block above)."""
    with_params = [i for i, m in enumerate(model) if _has_parameters(m)]
    if name == "post-activation":
        return with_params[1:]
    return [i + 1 for i in with_params[:-1]]


class DNI:
    """Synthetic-gradient learner for `model`, an nn.Sequential.

    split: the indices of `model` where a new block starts, or a named
    split that decouples every layer: "post-activation" (None, the default:
    the interfaces are the layers' activations) or "pre-activation" (the
    layers' outputs before their activation); the K blocks model[0:s_1],
    model[s_1:s_2], ... meet at K-1 interfaces, each with its own
    SyntheticGradient module.
    conditioned: cDNI, the module also sees the label (one-hot class, or the
    float target for mse). lam: λ of BP(λ), in [0, 1]: 0 (default) is DNI,
    every block below the top learning from its own synthetic gradient only
    and each module regressing onto the next one's prediction backpropagated
    through one block; 1 is backprop. sg_hidden: hidden ReLU widths of each
    module (() = linear). loss: "ce" (cross-entropy of the output) or "mse"
    (½‖output − y‖² summed over outputs; integer labels become one-hot).
    example_input: one batch of inputs, to size interfaces that are not the
    output of a Linear (a Conv2d block's map); not needed for MLPs.

    `step(x, y)` adds the batch-mean update of every model parameter and the
    gradient of every module's regression loss into `.grad` (so any
    torch.optim optimizer descends; give it `sg_parameters()` too) and
    returns the batch-mean loss. The modules predict per-sample gradients
    ∂ℓ_i/∂h_k, independent of the batch size. Under torch.distributed each
    rank steps on its own equally sized shard and `step` averages `.grad`
    over the ranks (`process_group`; the default group when None);
    `localgrad.distributed.broadcast_state(learner)` gives every rank rank
    0's model and SG modules.
    """

    process_group = None
    replicated = ("synthesizers",)

    def __init__(self, model: nn.Sequential, split=None, conditioned: bool = False, lam: float = 0.0,
                 sg_hidden=(), loss: str = "ce", example_input: torch.Tensor | None = None):
        if not isinstance(model, nn.Sequential):
            hint = ""
            if isinstance(getattr(model, "module", None), nn.Sequential):
                hint = (" (pass the model itself, not its DistributedDataParallel wrapper: the learner writes "
                        ".grad and averages it over the ranks itself)")
            raise UnsupportedModelError(f"DNI: model must be an nn.Sequential, got {type(model).__name__}{hint}")
        if len(model) == 0:
            raise UnsupportedModelError("DNI: model is an empty nn.Sequential")
        self.conditioned = as_bool(conditioned, "DNI", "conditioned")
        self.lam = as_float(lam, "DNI", "lam", nonnegative=True)
        if self.lam > 1:
            raise ValueError(f"DNI: lam must lie in [0, 1], got {self.lam}")
        if loss not in LOSSES:
            raise ValueError(f"DNI: loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        self.loss = loss
        if isinstance(sg_hidden, (str, bytes)) or not hasattr(sg_hidden, "__iter__"):
            raise TypeError(f"DNI: sg_hidden must be a sequence of widths, got {sg_hidden!r}")
        self.sg_hidden = tuple(as_int(w, "DNI", "sg_hidden", minimum=1) for w in sg_hidden)
        self.model = model
        self.split = self._check_split(model, split)
        bounds = [0, *self.split, len(model)]
        self.blocks = [model[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        params = [p for p in model.parameters()]
        if not params:
            raise UnsupportedModelError("DNI: model has no parameters")
        self._dtype, self._device = params[0].dtype, params[0].device
        shapes, n_out = self._interface_shapes(example_input)
        self._input_shape = None if example_input is None else tuple(example_input.shape[1:])
        self.n_outputs = n_out
        n_condition = n_out if self.conditioned else 0
        self.synthesizers = nn.ModuleList(
            SyntheticGradient(s, n_condition, self.sg_hidden, dtype=self._dtype, device=self._device) for s in shapes
        )

    # --- construction -------------------------------------------------------
    @staticmethod
    def _check_split(model: nn.Sequential, split) -> list[int]:
        if split is None or isinstance(split, str):
            name = "post-activation" if split is None else split
            if name not in SPLITS:
                raise ValueError(f"DNI: split must be a sequence of module indices or one of {', '.join(SPLITS)}, "
                                 f"got {split!r}")
            cuts = named_split(model, name)
            if not cuts:
                raise UnsupportedModelError("DNI: model has only one layer with parameters, so there is no interface to put a "
                                 "synthetic gradient on; give it at least two layers (or pass split=)")
            return cuts
        if isinstance(split, bytes) or not hasattr(split, "__iter__"):
            raise TypeError(f"DNI: split must be a sequence of module indices, got {split!r}")
        cuts = [as_int(s, "DNI", "split", minimum=1) for s in split]
        if not cuts:
            raise ValueError("DNI: split must name at least one cut (an interface), got none")
        if any(b <= a for a, b in zip(cuts[:-1], cuts[1:])):
            raise ValueError(f"DNI: split must be strictly increasing, got {cuts}")
        if cuts[-1] >= len(model):
            raise ValueError(f"DNI: split indices must lie in [1, {len(model) - 1}] (the model has {len(model)} "
                             f"modules), got {cuts[-1]}")
        return cuts

    def _interface_shapes(self, example_input):
        """(the shape of each interface without the batch dimension, output width)."""
        if example_input is not None:
            if not isinstance(example_input, torch.Tensor) or example_input.dim() < 1:
                raise TypeError("DNI: example_input must be a tensor with a batch dimension")
            with torch.no_grad():
                h, shapes = example_input.to(self._device, self._dtype), []
                for block in self.blocks:
                    h = block(h)
                    shapes.append(tuple(h.shape[1:]))
            if len(shapes[-1]) != 1:
                raise UnsupportedModelError(f"DNI: the model's output must be (batch, outputs), got (batch, *{shapes[-1]})")
            return shapes[:-1], shapes[-1][0]
        widths = []
        for k, block in enumerate(self.blocks):
            width = None
            for m in block:
                if isinstance(m, nn.Linear):
                    width = m.out_features
                elif width is not None and not isinstance(m, _SHAPE_KEEPING):
                    width = None
                    break
            if width is None:
                raise ValueError(f"DNI: cannot tell the shape of block {k}'s output (it does not end in a Linear "
                                 "and shape-keeping modules); pass example_input= (one batch of inputs)")
            widths.append((width,))
        return widths[:-1], widths[-1][0]

    def __repr__(self) -> str:
        return (f"DNI(blocks={len(self.blocks)}, split={self.split}, conditioned={self.conditioned}, "
                f"lam={self.lam}, sg_hidden={self.sg_hidden}, loss={self.loss!r})")

    # --- parameters and state -------------------------------------------------
    def sg_parameters(self):
        """The synthetic-gradient modules' parameters (for the optimizer)."""
        return self.synthesizers.parameters()

    def state_dict(self) -> dict:
        return {"synthesizers": self.synthesizers.state_dict(), "split": list(self.split),
                "conditioned": self.conditioned, "lam": self.lam, "sg_hidden": list(self.sg_hidden)}

    def load_state_dict(self, state: dict) -> None:
        for key, mine in (("split", list(self.split)), ("conditioned", self.conditioned),
                          ("sg_hidden", list(self.sg_hidden))):
            if key in state and state[key] != mine:
                raise ValueError(f"DNI.load_state_dict: state has {key}={state[key]!r}, this learner {mine!r}")
        self.synthesizers.load_state_dict(state["synthesizers"])
        if "lam" in state:
            self.lam = float(state["lam"])

    # --- checks -----------------------------------------------------------
    def _check_input(self, x) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"DNI: x must be a tensor, got {type(x).__name__}")
        if x.dim() < 1:
            raise ValueError("DNI: x must have a batch dimension, got a 0-d tensor")
        if x.dtype != self._dtype or x.device != self._device:
            raise TypeError(f"DNI: x must be {self._dtype} on {self._device} like the parameters, got "
                            f"{x.dtype} on {x.device}")
        if self._input_shape is not None and tuple(x.shape[1:]) != self._input_shape:
            raise ValueError(f"DNI: x must have shape (batch, {', '.join(map(str, self._input_shape))}) like "
                             f"example_input, got {tuple(x.shape)}")
        first = self.model[0]
        flatten = isinstance(first, nn.Flatten) and first.start_dim == 1 and first.end_dim == -1
        layer = self.model[1] if flatten and len(self.model) > 1 else first
        if isinstance(layer, nn.Linear):
            width = math.prod(x.shape[1:]) if flatten else (x.shape[-1] if x.dim() > 1 else None)
            if width != layer.in_features:
                raise ValueError(f"DNI: x must give (batch, {layer.in_features}) features to the first Linear, "
                                 f"got shape {tuple(x.shape)}")
        return x

    def _check_target(self, y, batch: int) -> torch.Tensor:
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"DNI: y must be a tensor, got {type(y).__name__}")
        n = self.n_outputs
        if not torch.is_floating_point(y):
            if y.dtype == torch.bool or y.is_complex() or y.shape != (batch,):
                raise ValueError(f"DNI: class indices y must be an integer tensor of shape ({batch},), got "
                                 f"{y.dtype} {tuple(y.shape)}")
            if batch and (int(y.min()) < 0 or int(y.max()) >= n):
                raise ValueError(f"DNI: class indices y must lie in [0, {n}), got {int(y.min())}..{int(y.max())}")
            return y.to(self._device)
        if self.loss == "ce":
            raise ValueError(f"DNI: loss 'ce' takes class indices y (an integer tensor of shape ({batch},)), got "
                             f"float {tuple(y.shape)}")
        if y.shape != (batch, n):
            raise ValueError(f"DNI: float targets y must have shape ({batch}, {n}), got {tuple(y.shape)}")
        if not torch.isfinite(y).all():
            raise ValueError("DNI: y contains NaN or inf")
        return y.to(self._device, self._dtype)

    # --- the step -----------------------------------------------------------
    def _per_sample_losses(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.loss == "ce":
            return F.cross_entropy(out, y, reduction="none")
        target = y if torch.is_floating_point(y) else F.one_hot(y, self.n_outputs).to(out.dtype)
        return 0.5 * (out - target).pow(2).sum(1)

    def _condition(self, y: torch.Tensor) -> torch.Tensor | None:
        if not self.conditioned:
            return None
        if torch.is_floating_point(y):
            return y
        return F.one_hot(y, self.n_outputs).to(self._dtype)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One batch of BP(λ): the forward pass block by block, each SG
        module's prediction at its interface, then from the top down each
        block's update from its mixed signal z_k (one vector-Jacobian product
        per block, which also gives the target t_{k-1} of the module below),
        and each module's regression gradient. Returns the batch-mean loss."""
        check_replicated(self.model.parameters(), "DNI")
        x = self._check_input(x)
        batch = x.shape[0]
        y = self._check_target(y, batch)
        n = max(batch, 1)
        K = len(self.blocks)
        condition = self._condition(y)
        with torch.enable_grad():
            inputs, outputs = [], []
            h = x
            for k, block in enumerate(self.blocks):
                leaf = h.detach().requires_grad_(k > 0)
                inputs.append(leaf)
                h = block(leaf)
                outputs.append(h)
            if outputs[-1].dim() != 2 or outputs[-1].shape[1] != self.n_outputs:
                raise UnsupportedModelError(f"DNI: the model's output must be (batch, {self.n_outputs}), got "
                                 f"{tuple(outputs[-1].shape)}")
            synthetic = [m(outputs[k].detach(), condition) for k, m in enumerate(self.synthesizers)]
            losses = self._per_sample_losses(outputs[-1], y)
        written = []
        targets: list[torch.Tensor | None] = [None] * (K - 1)
        # Top block: the true loss, its parameters' gradient and t_{K-1}.
        cotangent: torch.Tensor | None = None
        for k in range(K - 1, -1, -1):
            params = [p for p in self.blocks[k].parameters() if p.requires_grad]
            wants_input = k > 0
            sources = ([inputs[k]] if wants_input else []) + params
            with torch.enable_grad():
                if k == K - 1:
                    grads = torch.autograd.grad(losses.sum(), sources, allow_unused=True) if sources else []
                else:
                    grads = torch.autograd.grad(outputs[k], sources, cotangent, allow_unused=True) if sources else []
            if wants_input:
                t = grads[0] if grads[0] is not None else torch.zeros_like(inputs[k])
                targets[k - 1] = t
                ghat = synthetic[k - 1].detach()
                cotangent = t if self.lam == 1.0 else ghat if self.lam == 0.0 else \
                    self.lam * t + (1.0 - self.lam) * ghat
                grads = grads[1:]
            for p, g in zip(params, grads):
                g = torch.zeros_like(p) if g is None else g.div_(n)
                add_to_grad(p, g, owned=True)
                written.append(p)
        sg_params = [p for p in self.synthesizers.parameters() if p.requires_grad]
        if synthetic and sg_params:
            with torch.enable_grad():
                sg_loss = sum(ref.regression_loss(s, t) for s, t in zip(synthetic, targets))
                sg_grads = torch.autograd.grad(sg_loss, sg_params, allow_unused=True)
            for p, g in zip(sg_params, sg_grads):
                add_to_grad(p, torch.zeros_like(p) if g is None else g, owned=True)
                written.append(p)
        average_gradients(written, group=self.process_group)
        return losses.detach().sum() / n
