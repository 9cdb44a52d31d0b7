"""Forward gradients under the Learner API: fg-weight (Baydin et al. 2022),
fg-activity and fg-local (Ren, Kornblith, Liao & Hinton 2023). Maths and
equations: localgrad/reference/forward_gradient.py."""

from __future__ import annotations

import math

import torch
from torch import nn

from localgrad import distributed
from localgrad._checks import as_int
from localgrad.forward_gradient.estimators import activity_perturbation, local_perturbation, weight_perturbation
from localgrad.learner import Learner, StepOutput, add_to_grad, register_rule
from localgrad.mlp_blocks import split_blocks
from localgrad.training import one_hot_targets

PERTURBATIONS = ("weight", "activity")
_GOLDEN = 0x9E3779B97F4A7C15  # spreads (seed, step) pairs over the generator's seeds


class ForwardGradientLearner(Learner):
    """fg-weight, fg-activity, fg-local: `.grad` gets the forward-gradient
    estimate of the batch-mean loss's gradient, from K jvps (torch.func)
    and no backward pass.

    Options: tangents K (independent tangents averaged per step; the
    estimate's error falls as 1/sqrt(K)); perturbation "weight" (a tangent
    over every trainable parameter; any model) or "activity" (a tangent
    over every Linear layer's pre-activations per sample; a stock MLP, an
    nn.Sequential of Linear layers and parameter-free modules ending in a
    Linear); local (fg-local: each hidden Linear block learns from its own
    loss through a linear head, the learner's parameters, trained by their
    exact gradient; activity perturbation); loss "ce" or "mse".

    The tangents come from a generator seeded by the learner's seed and its
    step count (both in `counter`, which state_dict saves and
    broadcast_state replicates), never from torch's global generator: every
    data-parallel rank draws the same tangents, activity tangents for the
    whole union batch (each rank uses its own samples' rows), so the ranks'
    mean `.grad` is the union batch's estimate."""

    def __init__(self, model, *, rule: str, seed: int = 0, process_group=None, perturbation: str = "weight",
                 local: bool = False, tangents: int = 1, loss: str = "ce"):
        super().__init__(model, rule=rule, seed=seed, process_group=process_group)
        if perturbation not in PERTURBATIONS:
            raise ValueError(f"{rule}: perturbation must be one of {PERTURBATIONS}, got {perturbation!r}")
        if loss not in ("ce", "mse"):
            raise ValueError(f"{rule}: loss must be 'ce' or 'mse', got {loss!r}")
        if local and perturbation != "activity":
            raise ValueError(f"{rule}: local losses are implemented with perturbation='activity' only")
        self.perturbation, self.local, self.loss = perturbation, bool(local), loss
        self.tangents = as_int(tangents, rule, "tangents", minimum=1)
        ref = self._reference_tensor()
        self.blocks = split_blocks(model, rule) if perturbation == "activity" else None
        self.heads = nn.ModuleList()
        if self.local:
            g = torch.Generator().manual_seed(self.seed)
            n_out = self.blocks.blocks[-1].linear.out_features
            for block in self.blocks.blocks[:-1]:
                self.heads.append(_head(block.linear.out_features, n_out, g).to(ref))
        self.counter = torch.tensor([self.seed, 0], dtype=torch.int64, device=ref.device)
        self.replicated = ("counter", "heads")

    def parameters(self):
        return list(self.heads.parameters())

    def _generator(self) -> torch.Generator:
        seed, step = (int(v) for v in self.counter.tolist())
        g = torch.Generator(device=self.counter.device)
        g.manual_seed((seed * _GOLDEN + step) % (1 << 63))
        return g

    def draw_tangents(self, x: torch.Tensor):
        """This step's K tangents for a batch like x: {name: (K, *shape)}
        over the trainable parameters (weight perturbation) or, per Linear
        layer, (K, batch, n_l) (activity perturbation). Drawn in float32
        whatever the model's dtype, so that a float32 and a float64 run
        take the same directions."""
        g = self._generator()
        ref = self._reference_tensor()
        k = self.tangents
        if self.perturbation == "weight":
            return {n: torch.randn((k, *p.shape), generator=g, dtype=torch.float32, device=p.device).to(p.dtype)
                    for n, p in self.model.named_parameters() if p.requires_grad}
        offset, union = distributed.shard_offset(x.shape[0], self.process_group)
        return [torch.randn(k, union, b.linear.out_features, generator=g, dtype=torch.float32,
                            device=ref.device)[:, offset:offset + x.shape[0]].to(ref.dtype) for b in self.blocks.blocks]

    def _step(self, x, y):
        n_out = self._n_out(x)
        one_hot_targets(y, x.shape[0], torch.empty(n_out, 0, dtype=x.dtype, device=x.device), self.rule)
        tangents = self.draw_tangents(x)
        self.counter[1] += 1
        with torch.no_grad():
            if self.perturbation == "weight":
                params = {n: p.detach() for n, p in self.model.named_parameters() if p.requires_grad}
                loss, estimate = weight_perturbation(self.model, params, x, y, self.loss, tangents)
                for n, p in self.model.named_parameters():
                    if n in estimate:
                        add_to_grad(p, estimate[n], owned=True)
                return StepOutput(loss.detach(), None)
            if self.local:
                loss, out, grads, head_grads = local_perturbation(self.blocks, self.heads, x, y, self.loss, tangents)
                for head, (dw, db) in zip(self.heads, head_grads):
                    add_to_grad(head.weight, dw, owned=True)
                    add_to_grad(head.bias, db, owned=True)
            else:
                loss, out, grads = activity_perturbation(self.blocks, x, y, self.loss, tangents)
            for block, (dw, db) in zip(self.blocks.blocks, grads):
                add_to_grad(block.linear.weight, dw, owned=True)
                if block.linear.bias is not None:
                    add_to_grad(block.linear.bias, db, owned=True)
        return StepOutput(loss.detach(), out.detach())

    def _n_out(self, x) -> int:
        if self.blocks is not None:
            return self.blocks.blocks[-1].linear.out_features
        last = [m for m in self.model.modules() if isinstance(m, nn.Linear)]
        if last:
            return last[-1].out_features
        with torch.no_grad():
            return self.model(x[:1]).shape[1]

    def state_dict(self):
        return {**super().state_dict(), "counter": self.counter.cpu().clone(), "heads": self.heads.state_dict()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.counter.copy_(state["counter"])
        self.heads.load_state_dict(state["heads"])


def _head(n_in: int, n_out: int, g: torch.Generator) -> nn.Linear:
    """nn.Linear's default init (uniform +-1/sqrt(n_in)), from the learner's own generator."""
    head = nn.Linear(n_in, n_out)
    bound = 1.0 / math.sqrt(n_in)
    with torch.no_grad():
        head.weight.copy_(torch.rand(n_out, n_in, generator=g, dtype=torch.float64) * 2 * bound - bound)
        head.bias.copy_(torch.rand(n_out, generator=g, dtype=torch.float64) * 2 * bound - bound)
    return head


_RULES = {
    "fg-weight": ("forward gradient by weight perturbation: (grad L . v) v from one jvp per tangent",
                  "Baydin, Pearlmutter, Syme, Wood & Torr 2022, arXiv:2202.08587", {"perturbation": "weight"}),
    "fg-activity": ("forward gradient by activity perturbation of every layer's pre-activations",
                    "Ren, Kornblith, Liao & Hinton 2023, ICLR", {"perturbation": "activity"}),
    "fg-local": ("activity-perturbed forward gradient of per-block local losses through linear heads",
                 "Ren, Kornblith, Liao & Hinton 2023, ICLR", {"perturbation": "activity", "local": True}),
}
for _name, (_summary, _paper, _options) in _RULES.items():
    register_rule(_name, family="forward_gradient", summary=_summary, paper=_paper, **_options)(ForwardGradientLearner)
