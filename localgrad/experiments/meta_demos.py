"""The meta-learning demos (`localgrad demo --mode meta`):

  oja          meta-train the polynomial rule on single-neuron PCA episodes,
               by backprop and by evolution strategies; the learned rule
               should be Oja's (Confavreux et al. 2020)
  fewshot      meta-learn a plasticity rule for 4-way 5-shot digits episodes,
               against plain Hebb and SGD in the inner loop (held-out classes)
  fixed-weight an LSTM meta-trained by BPTT on random linear regressions,
               then frozen: its error falls within episodes of unseen tasks

Each runs on one CPU core in about a minute; `scale` < 1 shrinks the budgets
(the tests run scale 0.05)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from localgrad.meta.evolution import EvolutionStrategies
from localgrad.meta.fixed_weight import FixedWeightLearner, linear_regression_tasks
from localgrad.meta.inner_loop import meta_train, run_episode
from localgrad.meta.rules import ABCDRule, PolynomialRule, term_name
from localgrad.experiments.meta_tasks import DigitsEpisodes, pca_episodes, pca_loss
from localgrad.reference import meta as reference

TASKS = ("oja", "fewshot", "fixed-weight")


def _steps(n: int, scale: float) -> int:
    return max(1, round(n * scale))


# Rediscovering Oja's rule --------------------------------------------------


@dataclass
class OjaResult:
    terms: dict[str, float]  # learned theta_abc by term name
    history: list[list[float]]  # the 27 coefficients after each meta-step
    losses: list[float]
    cosine: dict[str, float]  # rule -> mean |cos(w_T, v_1)| on held-out episodes
    norm: dict[str, float]  # rule -> mean |w_T| there
    seconds: float
    outer: str = "backprop"


def bounded(rule, limit: float = 3.0):
    """The rule with the weights kept in [-limit, limit]: early in
    meta-training some rules (y^2 w^2, x^2 y^2 w^2 > 0) blow the weights up
    to inf within an episode, and one NaN meta-gradient ends the run. Oja's
    solutions (|w| = 1) never reach the bound."""

    def update(x, y, weight):
        return (weight + rule(x, y, weight)).clamp(-limit, limit) - weight

    return update


def rediscover_oja(meta_steps: int = 400, steps: int = 60, episodes: int = 32, batch: int = 8, lr: float = 0.05,
                   meta_lr: float = 0.01, sparsity: float = 5e-3, seed: int = 0, progress: bool = False,
                   outer: str = "backprop", population: int = 64, sigma: float = 0.01) -> OjaResult:
    """theta from zeros, Adam on the meta-loss: the PCA loss (1 - cos^2 +
    (|w|^2 - 1)^2) over an episode's last 10 steps, plus sparsity * |theta|_1
    (Confavreux et al. penalise the rule's L1 norm too: of the many rules that
    do PCA it prefers the one with fewest terms). outer: "backprop" (autograd
    through the episodes) or "es" (EvolutionStrategies with centred ranks,
    `population` members at `sigma`, all on the same episodes per step)."""
    if outer not in ("backprop", "es"):
        raise ValueError(f"rediscover_oja: outer must be 'backprop' or 'es', got {outer!r}")
    generator = torch.Generator().manual_seed(seed)
    rule = PolynomialRule(lr=lr)
    optimizer = torch.optim.Adam(rule.parameters(), lr=meta_lr)
    history: list[list[float]] = []

    def meta_loss(step: int) -> torch.Tensor:
        ep = pca_episodes(episodes, steps, batch, generator)
        weights = run_episode(bounded(rule), ep.weight, ep.inputs, history=True)
        task = torch.stack([pca_loss(w, ep.top) for w in weights[-10:]]).mean()
        return task + sparsity * rule.theta.abs().sum()

    def population_loss(theta: torch.Tensor) -> torch.Tensor:  # theta (P, 3, 3, 3) -> (P,)
        ep = pca_episodes(episodes, steps, batch, generator)
        member = bounded(lambda x, y, w: rule(x, y, w, theta=theta[:, None]))
        start = ep.weight.expand(len(theta), *ep.weight.shape)
        weights = run_episode(member, start, ep.inputs, history=True)
        task = torch.stack([pca_loss(w, ep.top) for w in weights[-10:]]).mean((0, 2))
        return task + sparsity * theta.abs().sum((1, 2, 3))

    def record(step: int, loss: float) -> None:
        history.append(rule.theta.detach().flatten().tolist())
        if progress and step % 50 == 0:
            print(f"  oja ({outer}) meta-step {step:4d}  loss {loss:.4f}")

    start = time.perf_counter()
    if outer == "backprop":
        losses = meta_train(meta_loss, optimizer, meta_steps, record, clip=1.0)
    else:
        es = EvolutionStrategies(rule.parameters(), sigma=sigma, population=population, seed=seed, ranks=True)
        losses = []
        for step in range(meta_steps):
            optimizer.zero_grad()
            losses.append(es.estimate_gradient(population_loss))
            optimizer.step()
            record(step, losses[-1])
    seconds = time.perf_counter() - start
    held_out = pca_episodes(256, steps, batch, torch.Generator().manual_seed(seed + 10_000))
    speed = rule.theta.detach()[1, 1, 0].item()
    rules = {
        "learned": rule,
        "oja": PolynomialRule(lr=lr, init="oja"),
        f"oja x {speed:.2f} (learned xy)": PolynomialRule(lr=lr * speed, init="oja"),
        "initial (theta = 0)": PolynomialRule(lr=lr),
    }
    cosine, norm = {}, {}
    with torch.no_grad():
        for name, r in rules.items():
            w = run_episode(r, held_out.weight, held_out.inputs).squeeze(-2)
            cosine[name] = (w * held_out.top).sum(-1).abs().div(w.norm(dim=-1)).mean().item()
            norm[name] = w.norm(dim=-1).mean().item()
    return OjaResult(rule.terms(), history, losses, cosine, norm, seconds, outer)


def format_oja(result: OjaResult) -> str:
    scale = result.terms["x y"]
    ranked = sorted(result.terms.items(), key=lambda kv: -abs(kv[1]))
    outer = "backprop" if result.outer == "backprop" else "evolution strategies (population mean)"
    lines = [f"rediscover Oja: polynomial rule, 27 terms, {outer}, {len(result.losses)} meta-steps "
             f"({result.seconds:.0f} s), final meta-loss {result.losses[-1]:.4f}",
             f"{'term':<12} {'theta':>8} {'theta / theta_xy':>17} {'Oja':>5}"]
    for name, value in ranked[:6]:
        oja = {"x y": "+1", "y^2 w": "-1"}.get(name, "0")
        lines.append(f"{name:<12} {value:>+8.3f} {value / scale:>+17.3f} {oja:>5}")
    rest = max(abs(v) for k, v in ranked[6:])
    lines.append(f"{'(the other 21)':<12} {'':>8} {'|.| <= ' + format(rest / abs(scale), '.3f'):>17}")
    lines.append(f"{'rule on 256 held-out episodes':<30} {'|cos(w, v1)|':>13} {'|w|':>6}")
    for name in result.cosine:
        lines.append(f"{name:<30} {result.cosine[name]:>13.4f} {result.norm[name]:>6.3f}")
    return "\n".join(lines)


def plot_coefficients(result: OjaResult, path: str) -> None:
    """The 27 coefficients during meta-training, Oja's two terms highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [term_name(a, b, c) for a in range(3) for b in range(3) for c in range(3)]
    series = torch.tensor(result.history).T
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in zip(names, series):
        oja = name in ("x y", "y^2 w")
        ax.plot(values.tolist(), color=None if oja else "0.7", lw=2 if oja else 0.8, label=name if oja else None)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("meta-step")
    ax.set_ylabel("theta_abc")
    ax.set_title(f"polynomial rule meta-trained on PCA episodes ({result.outer})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# Few-shot digits -------------------------------------------------------------


def sgd_rule(lr: torch.Tensor):
    """One step of gradient descent on the cross-entropy of the readout
    logits x W^T against the target y (one-hot), as a rule (x, y, W) -> dW."""

    def update(x, y, weight):
        p = torch.softmax(x @ weight.transpose(-1, -2), -1)
        return -lr * (p - y).transpose(-1, -2) @ x / max(x.shape[-2], 1)

    return update


class FewShotLearner(nn.Module):
    """Features f(x) = relu(E x + b) and a plastic readout W (ways, hidden)
    that starts at zero in every episode and learns from the support set with
    `kind`'s rule, the post-synaptic units clamped to the one-hot label; the
    query's logits are f(x) W^T. embedding "random": E, b fixed at their
    random init (only the rule is meta-learned); "learned": meta-trained too."""

    KINDS = ("hebb", "abcd", "polynomial", "sgd")

    def __init__(self, kind: str, hidden: int = 256, embedding: str = "random", seed: int = 0):
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"FewShotLearner: kind must be one of {', '.join(self.KINDS)}, got {kind!r}")
        if embedding not in ("random", "learned"):
            raise ValueError(f"FewShotLearner: embedding must be 'random' or 'learned', got {embedding!r}")
        self.kind = kind
        torch.manual_seed(seed)  # every kind starts from the same embedding
        self.embed = nn.Sequential(nn.Linear(64, hidden), nn.ReLU())
        self.embed.requires_grad_(embedding == "learned")
        self.log_lr = nn.Parameter(torch.tensor(0.0))
        if kind == "abcd":
            self.rule = ABCDRule((1, hidden), lr=1.0, A=1.0, learn_lr=False)  # per input synapse
        elif kind == "polynomial":
            self.rule = PolynomialRule(lr=1.0, init=reference.polynomial_theta({(1, 1, 0): 1.0}, dtype=torch.float32))

    def update(self, x, y, weight):
        lr = self.log_lr.exp()
        if self.kind == "hebb":
            return reference.hebb_update(x, y, lr)
        if self.kind == "sgd":
            return sgd_rule(lr)(x, y, weight)
        return lr * self.rule(x, y, weight)

    def forward(self, support, labels, query):
        features = self.embed(support)  # (shots, E, ways, hidden)
        weight = features.new_zeros(*support.shape[1:-2], labels.shape[-1], features.shape[-1])
        weight = run_episode(self.update, weight, features, post=labels)
        return self.embed(query) @ weight.transpose(-1, -2)


# (inner loop, embedding): the four inner loops on fixed random features, and
# Hebb with a meta-trained embedding (which fits the 6 training classes).
FEW_SHOT_ROWS = (("hebb", "random"), ("abcd", "random"), ("polynomial", "random"), ("sgd", "random"),
                 ("hebb", "learned"))


@dataclass
class FewShotRow:
    kind: str
    embedding: str
    accuracy: dict[str, float]  # setting -> mean query accuracy on held-out episodes
    seconds: float


def few_shot(meta_steps: int = 300, episodes: int = 16, ways: int = 4, shots: int = 5, queries: int = 10,
             test_episodes: int = 500, rows=FEW_SHOT_ROWS, seed: int = 0, progress: bool = False):
    """Meta-trains each (kind, embedding) row on episodes of the classes 0-5
    (Adam 1e-2 on the rule's parameters, and the embedding's if learned),
    then tests on new episodes of the held-out classes 6-9, with `shots` and
    with 1 shot, and on new episodes of the meta-training classes."""
    digits = DigitsEpisodes()
    results = []
    for kind, embedding in rows:
        learner = FewShotLearner(kind, embedding=embedding, seed=seed)
        optimizer = torch.optim.Adam([p for p in learner.parameters() if p.requires_grad], lr=1e-2)
        generator = torch.Generator().manual_seed(seed)

        def meta_loss(step: int) -> torch.Tensor:
            ep = digits.sample(episodes, ways, shots, queries, DigitsEpisodes.TRAIN_CLASSES, generator)
            logits = learner(ep.support, ep.support_labels, ep.query)
            return nn.functional.cross_entropy(logits.flatten(0, 1), ep.query_labels.flatten())

        start = time.perf_counter()
        meta_train(meta_loss, optimizer, meta_steps, clip=10.0)
        seconds = time.perf_counter() - start
        accuracy = {}
        with torch.no_grad():
            for name, k, classes in ((f"{shots}-shot", shots, DigitsEpisodes.TEST_CLASSES),
                                     ("1-shot", 1, DigitsEpisodes.TEST_CLASSES),
                                     ("train cls", shots, DigitsEpisodes.TRAIN_CLASSES)):
                test = digits.sample(test_episodes, ways, k, queries, classes,
                                     torch.Generator().manual_seed(seed + 10_000 + k + len(classes)))
                logits = learner(test.support, test.support_labels, test.query)
                accuracy[name] = (logits.argmax(-1) == test.query_labels).double().mean().item()
        if progress:
            print(f"  fewshot {kind} ({embedding} embedding): {accuracy} ({seconds:.0f} s)")
        results.append(FewShotRow(kind, embedding, accuracy, seconds))
    return results


def format_few_shot(rows, ways: int = 4, shots: int = 5) -> str:
    settings = list(rows[0].accuracy)
    lines = [f"few-shot digits: {ways}-way, meta-trained {shots}-shot on classes 0-5; held-out classes 6-9 "
             f"({shots}- and 1-shot), and new episodes of classes 0-5 (train cls)",
             f"{'inner loop':<12} {'embedding':<10} " + " ".join(f"{s:>9}" for s in settings)
             + f" {'meta-train s':>13}"]
    for r in rows:
        lines.append(f"{r.kind:<12} {r.embedding:<10} " + " ".join(f"{100 * r.accuracy[s]:>8.1f}%" for s in settings)
                     + f" {r.seconds:>13.0f}")
    return "\n".join(lines)


# Fixed-weight learning -------------------------------------------------------


@dataclass
class FixedWeightResult:
    curve: list[float]  # frozen learner's squared error at each step, unseen tasks
    least_squares: list[float]  # the least-squares fit to the samples before each step (ridge 1e-3)
    chance: float  # E[y^2]: predicting 0
    seconds: float
    losses: list[float] = field(default_factory=list)


def fixed_weight(meta_steps: int = 1500, dim: int = 3, steps: int = 20, batch: int = 64, hidden: int = 64,
                 seed: int = 0, progress: bool = False) -> FixedWeightResult:
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    learner = FixedWeightLearner(dim, 1, hidden)
    optimizer = torch.optim.Adam(learner.parameters(), lr=3e-3)

    def meta_loss(step: int) -> torch.Tensor:
        x, y = linear_regression_tasks(batch, steps, dim, generator)
        return learner.step_losses(x, y).mean()

    def report(step: int, loss: float) -> None:
        if progress and step % 250 == 0:
            print(f"  fixed-weight meta-step {step:5d}  loss {loss:.4f}")

    start = time.perf_counter()
    losses = meta_train(meta_loss, optimizer, meta_steps, report, clip=1.0)
    seconds = time.perf_counter() - start
    learner.freeze()
    x, y = linear_regression_tasks(2000, steps, dim, torch.Generator().manual_seed(seed + 10_000))
    with torch.no_grad():
        curve = learner.step_losses(x, y).tolist()
    return FixedWeightResult(curve, least_squares_curve(x.double(), y.double()), (y.double() ** 2).mean().item(),
                             seconds, losses)


def least_squares_curve(x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-3) -> list[float]:
    """The error of predicting y_t from the ridge fit to (x_0..x_{t-1},
    y_0..y_{t-1}): what an ideal learner of the task family does."""
    errors = []
    eye = ridge * torch.eye(x.shape[-1], dtype=x.dtype)
    for t in range(x.shape[1]):
        xs, ys = x[:, :t], y[:, :t]
        w = torch.linalg.solve(xs.transpose(1, 2) @ xs + eye, xs.transpose(1, 2) @ ys)
        errors.append(((x[:, t : t + 1] @ w - y[:, t : t + 1]) ** 2).mean().item())
    return errors


def format_fixed_weight(result: FixedWeightResult, dim: int = 3) -> str:
    marks = sorted({0, 1, 2, dim, 2 * dim, len(result.curve) - 1})
    lines = [f"fixed-weight learner: LSTM meta-trained by BPTT on random {dim}-D linear regressions "
             f"({len(result.losses)} meta-steps, {result.seconds:.0f} s), then frozen; unseen tasks",
             f"{'step t':<22} " + " ".join(f"{t:>7d}" for t in marks),
             f"{'frozen LSTM error':<22} " + " ".join(f"{result.curve[t]:>7.3f}" for t in marks),
             f"{'least squares on 0..t-1':<22} " + " ".join(f"{result.least_squares[t]:>7.3f}" for t in marks),
             f"(predicting 0: {result.chance:.3f})"]
    return "\n".join(lines)


def run(tasks=TASKS, seed: int = 0, scale: float = 1.0, plot_path: str | None = None, progress: bool = True) -> dict:
    """The three demos (or those in `tasks`); prints their tables, writes the
    coefficient plot to plot_path if given (and matplotlib is there)."""
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"meta demo: tasks must be among {', '.join(TASKS)}, got {', '.join(unknown)}")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"meta demo: scale must be a positive number, got {scale!r}")
    results: dict = {}
    if "oja" in tasks:
        results["oja"] = rediscover_oja(meta_steps=_steps(400, scale), seed=seed, progress=progress)
        print(format_oja(results["oja"]))
        results["oja-es"] = rediscover_oja(meta_steps=_steps(200, scale), seed=seed, progress=progress, outer="es")
        print(format_oja(results["oja-es"]))
        if plot_path:
            try:
                plot_coefficients(results["oja"], plot_path)
                print(f"wrote {plot_path}")
            except ImportError:
                print("matplotlib is not installed: no plot written")
    if "fewshot" in tasks:
        results["fewshot"] = few_shot(meta_steps=_steps(300, scale), test_episodes=_steps(500, scale), seed=seed,
                                      progress=progress)
        print(format_few_shot(results["fewshot"]))
    if "fixed-weight" in tasks:
        results["fixed-weight"] = fixed_weight(meta_steps=_steps(1500, scale), seed=seed, progress=progress)
        print(format_fixed_weight(results["fixed-weight"]))
    return results
