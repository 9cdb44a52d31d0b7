"""PEPITA under the Learner API: two forward passes, the second on the
input modulated by a fixed (or weight-mirrored) random projection of the
output error. Maths, papers and equations: localgrad/reference/pepita.py."""

from __future__ import annotations

import math

import torch
from torch import nn

from localgrad._checks import as_float, as_int
from localgrad.forward_gradient.estimators import output_error, per_sample_loss
from localgrad.learner import Learner, StepOutput, add_to_grad, register_rule
from localgrad.mlp_blocks import split_blocks
from localgrad.training import one_hot_targets

FEEDBACK = ("fixed", "mirror")
_GOLDEN = 0x9E3779B97F4A7C15


class PepitaLearner(Learner):
    """pepita. model: a stock MLP (an nn.Sequential of Linear layers and
    parameter-free modules ending in a Linear); the modulation x + F e
    applies to the first Linear's input. `.grad` gets the batch-mean PEPITA
    update of every Linear (reference.pepita.pepita_updates).

    Options: feedback "fixed" (F uniform in +-feedback_scale sqrt(6/n_out),
    drawn once from the learner's seed; the 2022 paper) or "mirror" (F the
    product of per-layer maps B_l, the learner's parameters, trained by
    weight mirroring with noise of amplitude mirror_noise over mirror_batch
    rows drawn each step: the 2024 paper's adaptive feedback); feedback_scale
    (0.05); weight_decay (added to each weight's update); loss "ce"
    (softmax error) or "mse". The feedback, and the step counter that seeds
    the mirroring noise, are in state_dict and replicated across ranks."""

    def __init__(self, model, *, rule: str, seed: int = 0, process_group=None, feedback: str = "fixed",
                 feedback_scale: float = 0.05, weight_decay: float = 0.0, loss: str = "ce",
                 mirror_noise: float = 0.1, mirror_batch: int = 64):
        super().__init__(model, rule=rule, seed=seed, process_group=process_group)
        if feedback not in FEEDBACK:
            raise ValueError(f"{rule}: feedback must be one of {FEEDBACK}, got {feedback!r}")
        if loss not in ("ce", "mse"):
            raise ValueError(f"{rule}: loss must be 'ce' or 'mse', got {loss!r}")
        self.blocks = split_blocks(model, rule)
        self.feedback_kind, self.loss = feedback, loss
        self.feedback_scale = as_float(feedback_scale, rule, "feedback_scale", nonnegative=True)
        self.weight_decay = as_float(weight_decay, rule, "weight_decay", nonnegative=True)
        self.mirror_noise = as_float(mirror_noise, rule, "mirror_noise", nonnegative=True)
        self.mirror_batch = as_int(mirror_batch, rule, "mirror_batch", minimum=1)
        ref = self._reference_tensor()
        linears = [b.linear for b in self.blocks.blocks]
        n_in, n_out = linears[0].in_features, linears[-1].out_features
        g = torch.Generator().manual_seed(self.seed)
        self.mirrors = nn.ParameterList()
        if feedback == "fixed":
            bound = self.feedback_scale * math.sqrt(6.0 / n_out)
            self.F = ((torch.rand(n_in, n_out, generator=g, dtype=torch.float64) * 2 - 1) * bound).to(ref)
        else:
            widths = [l.out_features for l in linears[:-1]]
            std = (self.feedback_scale * math.sqrt(2.0 / n_in) / math.sqrt(math.prod(widths))) ** (1.0 / len(linears))
            for layer in linears:
                b = torch.randn(layer.in_features, layer.out_features, generator=g, dtype=torch.float64) * std
                self.mirrors.append(nn.Parameter(b.to(ref)))
            self.F = None
        self.counter = torch.tensor([self.seed, 0], dtype=torch.int64, device=ref.device)
        self.replicated = ("counter", "mirrors") + (("F",) if self.F is not None else ())

    def parameters(self):
        return list(self.mirrors)

    def default_optimizer(self, lr=None):
        """The paper's optimizer: SGD with momentum 0.9 at lr (0.01 unless
        given); the mirrors, when there are any, at a tenth of it. Under
        Adam at 1e-3 the demo's 784-256-256-10 MLP diverged (training loss
        1,800 after 10 epochs, 42 % test accuracy); the paper's SGD reached
        81 % in 3 epochs. The mirrors' tenth: at the model's rate the
        mirrored F grew 10^4-fold in 300 steps on the tests' separable task
        and learning failed."""
        lr = 1e-2 if lr is None else lr
        groups = [{"params": list(self.model.parameters()), "lr": lr}]
        if len(self.mirrors):
            groups.append({"params": self.parameters(), "lr": lr / 10})
        return torch.optim.SGD(groups, momentum=0.9)

    def feedback(self) -> torch.Tensor:
        """F: (n_in, n_out), the fixed map or the product of the mirrors."""
        if self.F is not None:
            return self.F
        f = self.mirrors[0].detach()
        for b in self.mirrors[1:]:
            f = f @ b.detach()
        return f

    def _forward(self, h):
        acts = [h]
        for block in self.blocks.blocks:
            h = block.after(block.linear(h))
            acts.append(h)
        return acts

    @torch.no_grad()
    def _step(self, x, y):
        target = one_hot_targets(y, x.shape[0], self.blocks.blocks[-1].linear.weight, self.rule)
        h0 = self.blocks.before(x).flatten(1) if len(self.blocks.before) else x
        acts = self._forward(h0)
        out = acts[-1].clone()  # returned in StepOutput; the second pass releases acts[-1]
        loss = per_sample_loss(out, target, self.loss).mean()
        e = output_error(out, target, self.loss)
        # The second pass forms each layer's update as soon as it has passed the layer and lets go
        # of both passes' activity there: the step then holds the first pass's activities and one
        # layer of the second (with both passes kept whole it peaked at 2x backprop's memory).
        h = h0 + e @ self.feedback().T
        batch = x.shape[0]
        last = len(self.blocks) - 1
        for l, block in enumerate(self.blocks.blocks):
            h_next = block.after(block.linear(h))
            delta = e if l == last else acts[l + 1].sub_(h_next)
            acts[l + 1] = None
            dw = delta.T @ h / batch
            if self.weight_decay:
                dw.add_(block.linear.weight, alpha=self.weight_decay)
            add_to_grad(block.linear.weight, dw, owned=True)
            if block.linear.bias is not None:
                add_to_grad(block.linear.bias, delta.mean(0), owned=True)
            h = h_next
        if len(self.mirrors):
            self._mirror()
        self.counter[1] += 1
        return StepOutput(loss, out)

    def draw_mirror_noise(self) -> list[torch.Tensor]:
        """This step's zero-mean noise xi_l (mirror_batch, n_{l-1}) per layer."""
        seed, step = (int(v) for v in self.counter.tolist())
        g = torch.Generator(device=self.counter.device).manual_seed((seed * _GOLDEN + step) % (1 << 63))
        ref = self._reference_tensor()
        noise = []
        for block in self.blocks.blocks:
            xi = self.mirror_noise * torch.randn(self.mirror_batch, block.linear.in_features, generator=g,
                                                 dtype=ref.dtype, device=ref.device)
            noise.append(xi - xi.mean())  # the authors centre the noise over the whole draw
        return noise

    def _mirror(self):
        for l, (block, b, xi) in enumerate(zip(self.blocks.blocks, self.mirrors, self.draw_mirror_noise())):
            response = block.after(block.linear(xi))
            add_to_grad(b, (1.0 if l == 0 else -1.0) * xi.T @ response / xi.shape[0], owned=True)

    def state_dict(self):
        state = {**super().state_dict(), "counter": self.counter.cpu().clone(),
                 "mirrors": [b.detach().cpu().clone() for b in self.mirrors]}
        if self.F is not None:
            state["F"] = self.F.cpu().clone()
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.counter.copy_(state["counter"])
        with torch.no_grad():
            for b, saved in zip(self.mirrors, state["mirrors"]):
                b.copy_(saved)
            if self.F is not None:
                self.F.copy_(state["F"])


register_rule("pepita", family="pepita",
              summary="two forward passes, the second on the input modulated by a random projection of the error",
              paper="Dellaferrera & Kreiman 2022, ICML; adaptive feedback: Srinivasan et al. 2024, ICLR")(PepitaLearner)
