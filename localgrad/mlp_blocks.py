"""A stock MLP (an nn.Sequential of Linear layers and parameter-free
modules) seen as blocks: one Linear and the parameter-free modules after it.
The forward-only rules (forward gradients with activity perturbation,
PEPITA) need a layer's input and its pre-activation, which hooks on an
arbitrary module cannot give them under torch.func transforms; walking the
blocks by hand can."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from localgrad.learner import UnsupportedModelError

# Elementwise and shape-only modules a block may hold after its Linear layer.
PARAMETER_FREE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU, nn.SiLU, nn.Identity, nn.Flatten,
                  nn.Hardsigmoid, nn.Softplus, nn.ReLU6, nn.Hardtanh)


@dataclass
class Block:
    linear: nn.Linear
    after: nn.Sequential  # the parameter-free modules between this Linear and the next


@dataclass
class Blocks:
    before: nn.Sequential  # the parameter-free modules before the first Linear (Flatten)
    blocks: list[Block]

    def __len__(self) -> int:
        return len(self.blocks)


def split_blocks(model: nn.Module, rule: str) -> Blocks:
    """The model's blocks; UnsupportedModelError (naming the module) for
    anything but an nn.Sequential of Linear layers and parameter-free
    modules that ends with a Linear layer (the output layer)."""
    if not isinstance(model, nn.Sequential):
        raise UnsupportedModelError(f"{rule}: the model must be an nn.Sequential of Linear layers and "
                                    f"activations ending in a Linear, got {type(model).__name__}")
    before, blocks = [], []
    for i, m in enumerate(model):
        if type(m) is nn.Linear:
            blocks.append(Block(m, nn.Sequential()))
        elif isinstance(m, PARAMETER_FREE):
            if blocks:
                blocks[-1].after.append(m)
            else:
                before.append(m)
        else:
            raise UnsupportedModelError(f"{rule}: model[{i}] ({type(m).__name__}) is neither a Linear layer nor a "
                                        "parameter-free activation; the learner trains stock MLPs")
    if not blocks or type(model[-1]) is not nn.Linear:
        raise UnsupportedModelError(f"{rule}: the model must end with an nn.Linear layer (the output layer)")
    return Blocks(nn.Sequential(*before), blocks)
