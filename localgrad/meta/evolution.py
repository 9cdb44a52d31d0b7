"""Evolution strategies as an outer loop (Salimans et al. 2017, "Evolution
strategies as a scalable alternative to reinforcement learning", Alg. 1 with
antithetic ("mirrored") sampling): the gradient of the expected loss under
Gaussian perturbations of the meta-parameters theta,
    g = 1 / (2 sigma n) sum_k (L(theta + sigma eps_k) - L(theta - sigma eps_k)) eps_k,
    eps_k ~ N(0, I), k = 1..n, population P = 2 n,
written into each parameter's .grad, so that any torch.optim optimizer
descends on it. For a quadratic L the mirrored difference is exactly
2 sigma eps^T grad L, and E[g] = grad L.

The population is evaluated in one call: loss_fn gets every parameter with a
leading population dimension P (members 0..n-1 at theta + sigma eps, n..2n-1
at theta - sigma eps) and returns P losses.

ranks=True replaces the losses by their centred ranks in [-1/2, 1/2] before
the sum (Salimans et al.'s fitness shaping): no longer an unbiased estimate
of the gradient, but one that a few diverging members cannot swamp."""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from localgrad.learner import add_to_grad
from localgrad._checks import as_bool, as_float, as_int


class EvolutionStrategies:
    """es = EvolutionStrategies(rule.parameters(), sigma=0.05, population=64, seed=0)
    optimizer.zero_grad(); loss = es.estimate_gradient(loss_fn); optimizer.step()

    loss_fn(*population) -> (P,) losses, population[j] of shape (P, *params[j].shape);
    with batched=False, loss_fn(*params) -> scalar is called once per member.
    The noise comes from a torch.Generator seeded with `seed`; its state and
    the step count are in state_dict(), so a run resumes bit-exactly."""

    def __init__(self, params: Iterable[torch.Tensor], sigma: float = 0.05, population: int = 64, seed: int = 0,
                 batched: bool = True, ranks: bool = False):
        op = "EvolutionStrategies"
        self.params = list(params)
        if not self.params or not all(isinstance(p, torch.Tensor) for p in self.params):
            raise ValueError(f"{op}: params must be a non-empty iterable of tensors")
        for i, p in enumerate(self.params):
            # An integer parameter would take the perturbations rounded (or
            # the noise cast to 0) and give a gradient of zeros.
            if not p.is_floating_point():
                raise TypeError(f"{op}: params[{i}] must be floating, got {p.dtype}")
        self.sigma = as_float(sigma, op, "sigma", positive=True)
        # Below the smallest normal number of a parameter's dtype, sigma * eps
        # loses its bits (or is 0) and the 1 / sigma of the estimate overflows.
        dtype = max({p.dtype for p in self.params}, key=lambda d: torch.finfo(d).tiny)
        if self.sigma < torch.finfo(dtype).tiny:
            raise ValueError(f"{op}: sigma = {self.sigma} is below the smallest normal {dtype} number "
                             f"({torch.finfo(dtype).tiny}); the estimate would overflow")
        self.population = as_int(population, op, "population", minimum=2)
        if self.population % 2:
            raise ValueError(f"{op}: population must be even (antithetic pairs), got {self.population}")
        self.seed = as_int(seed, op, "seed")
        self.batched = as_bool(batched, op, "batched")
        self.ranks = as_bool(ranks, op, "ranks")
        self.generator = torch.Generator().manual_seed(self.seed)
        self.steps = 0

    def _noise(self) -> list[torch.Tensor]:
        pairs = self.population // 2
        eps = []
        for p in self.params:
            # Drawn in float64 on the CPU generator, then cast: the same noise on every device and dtype.
            e = torch.randn((pairs, *p.shape), generator=self.generator, dtype=torch.float64)
            eps.append(e.to(device=p.device, dtype=p.dtype))
        return eps

    @torch.no_grad()
    def estimate(self, loss_fn: Callable) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The gradient estimate (one tensor per parameter) and the P losses;
        advances the generator."""
        eps = self._noise()
        population = [torch.cat([p + self.sigma * e, p - self.sigma * e]) for p, e in zip(self.params, eps)]
        if self.batched:
            losses = loss_fn(*population)
        else:
            losses = torch.stack([torch.as_tensor(loss_fn(*(m[k] for m in population)))
                                  for k in range(self.population)])
        if not isinstance(losses, torch.Tensor) or losses.shape != (self.population,):
            got = tuple(losses.shape) if isinstance(losses, torch.Tensor) else type(losses).__name__
            raise ValueError(f"EvolutionStrategies: loss_fn must return ({self.population},) losses, got {got}")
        pairs = self.population // 2
        fitness = losses
        if self.ranks:
            order = torch.empty_like(losses, dtype=torch.float64)
            order[losses.argsort(stable=True)] = torch.arange(self.population, dtype=torch.float64, device=losses.device)
            fitness = order / (self.population - 1) - 0.5
        difference = fitness[:pairs] - fitness[pairs:]  # L(theta + sigma eps) - L(theta - sigma eps)
        scale = 1.0 / (2.0 * self.sigma * pairs)
        grads = []
        for p, e in zip(self.params, eps):
            weights = difference.to(e.dtype).reshape(pairs, *([1] * p.dim()))
            grads.append(scale * (weights * e).sum(0))
        self.steps += 1
        return grads, losses

    def estimate_gradient(self, loss_fn: Callable) -> float:
        """Adds the estimate into .grad (as backward does: a tensor with
        requires_grad=False gets none) and returns the population's mean loss.
        Not `step`: the optimizer's step moves the parameters, a Learner's
        step trains on a batch; this only estimates."""
        grads, losses = self.estimate(loss_fn)
        for p, g in zip(self.params, grads):
            add_to_grad(p, g)
        return losses.mean().item()

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "steps": self.steps, "sigma": self.sigma,
                "population": self.population, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        for key in ("sigma", "population"):
            if state[key] != getattr(self, key):
                raise ValueError(f"EvolutionStrategies.load_state_dict: {key} is {getattr(self, key)} here, "
                                 f"{state[key]} in the state")
        self.generator.set_state(state["generator"])
        self.steps = int(state["steps"])
        self.seed = int(state["seed"])
