"""Sequence tasks for the online learners, and a side-by-side comparison of
the rules on them: accuracy, time per step and learner memory per sample.

- delayed recall: a symbol (one of `n_symbols`, one-hot) is shown at step 0,
  then `delay` blank steps; a cue channel fires at the last step, where the
  network must name the symbol (cross-entropy at that step only). Chance is
  1/n_symbols. Generated in code.
- mnist1d: MNIST-1D sequences (localgrad.data.mnist1d), 40 steps of one
  feature, cross-entropy at the last step. Chance is 1/10.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

import localgrad
from localgrad.online.leaky_rnn import LeakyRNN
from localgrad.online.memory import saved_bytes


@dataclass
class SequenceTask:
    name: str
    x_train: torch.Tensor  # (T, N, I)
    y_train: torch.Tensor  # (N,)
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int

    @property
    def chance(self) -> float:
        return 1.0 / self.n_classes


def delayed_recall(n_symbols: int = 4, delay: int = 8, n_train: int = 2048, n_test: int = 512,
                   seed: int = 0) -> SequenceTask:
    """Inputs (T = delay + 2, N, n_symbols + 1): the symbol at step 0, the cue
    (last channel) at the last step; label = the symbol."""
    g = torch.Generator().manual_seed(seed)

    def make(n):
        y = torch.randint(0, n_symbols, (n,), generator=g)
        x = torch.zeros(delay + 2, n, n_symbols + 1)
        x[0, torch.arange(n), y] = 1.0
        x[-1, :, n_symbols] = 1.0
        return x, y

    (xt, yt), (xs, ys) = make(n_train), make(n_test)
    return SequenceTask(f"delayed recall ({n_symbols} symbols, delay {delay})", xt, yt, xs, ys, n_symbols)


def mnist1d_sequences(seed: int = 42) -> SequenceTask:
    from localgrad import data

    d = data.mnist1d(seed)
    # Standardise with the training statistics; (N, 40) -> (40, N, 1).
    mean, std = d.x_train.mean(), d.x_train.std()
    prep = lambda x: ((x - mean) / std).T.unsqueeze(2).contiguous()  # noqa: E731
    return SequenceTask("mnist1d (40 steps)", prep(d.x_train), d.y_train, prep(d.x_test), d.y_test, 10)


def fashion_sequences(n_train: int | None = None, n_test: int | None = None) -> SequenceTask:
    """Sequential Fashion-MNIST: each image's 28 rows as 28 time steps of 28
    pixels, (28, N, 28), pixels in [0, 1] as data.fashion_mnist gives them;
    n_train / n_test keep the first images of each split."""
    from localgrad import data

    d = data.fashion_mnist(n_train, n_test)
    rows = lambda x: x.reshape(-1, 28, 28).transpose(0, 1).contiguous()  # noqa: E731
    return SequenceTask("sequential Fashion-MNIST (28 rows as 28 steps)", rows(d.x_train), d.y_train,
                        rows(d.x_test), d.y_test, 10)


# Rules that run each sequence in windows (two per sequence unless
# train_rule's window= says otherwise); the optimizer sees the summed
# gradient of a sequence's windows, one step per minibatch as every row.
WINDOWED = ("tbptt", "dni-rnn")


@dataclass
class OnlineResult:
    rule: str
    test_accuracy: float
    ms_per_step: float  # one time step of a training batch, learning included
    bytes_per_sample: int  # learner state (BPTT: tensors saved for backward) per sequence


@torch.no_grad()
def accuracy(model: LeakyRNN, x: torch.Tensor, y: torch.Tensor) -> float:
    ys, _ = model(x)
    return (ys[-1].argmax(1) == y).float().mean().item()


def _state_bytes(engine) -> int:
    return sum(t.numel() * t.element_size() for t in engine.state_dict().values()
               if torch.is_tensor(t) and t.dim() > 0 and t.shape[0] == engine.h.shape[0])


def rules() -> list[str]:
    """The rules these tasks train: every registered sequence rule of the leaky RNN."""
    return [r for r in localgrad.rules("sequence") if not r.endswith("-spiking")]


def train_rule(rule: str, task: SequenceTask, hidden: int = 32, alpha: float = 0.5, batch_size: int = 32,
               iterations: int = 200, lr: float = 3e-3, seed: int = 0, window: int | None = None) -> OnlineResult:
    """Adam on minibatches of whole sequences through the rule's Learner
    (localgrad.learner), loss at the last step only. window: the truncation
    window of the WINDOWED rules (default half the sequence, rounded up).
    Memory per sample: the learner's state (BPTT and the windowed rules:
    the bytes autograd saves, per window)."""
    torch.manual_seed(seed)
    n_in = task.x_train.shape[2]
    model = LeakyRNN(n_in, hidden, task.n_classes, alpha=alpha)
    learner = localgrad.learner(model, rule, seed=seed, window=window)
    opt = torch.optim.Adam([*model.parameters(), *learner.parameters()], lr=lr)
    g = torch.Generator().manual_seed(seed)
    steps = task.x_train.shape[0]
    windows = -(-steps // (window or -(-steps // 2))) if rule in WINDOWED else 1
    n = task.x_train.shape[1]
    elapsed, memory = 0.0, 0
    shared = [*model.parameters(), *learner.parameters()]
    for it in range(iterations):
        idx = torch.randint(0, n, (batch_size,), generator=g)
        x, y = task.x_train[:, idx].transpose(0, 1), task.y_train[idx]  # batch first, as the Learner API reads
        opt.zero_grad()
        start = time.perf_counter()
        if rule == "bptt" or rule in WINDOWED:
            memory = max(memory, saved_bytes(lambda: learner.step(x, y), shared) // (windows * batch_size))
        else:
            learner.step(x, y)
            memory = max(memory, _state_bytes(learner.inner) // batch_size)
        opt.step()
        elapsed += time.perf_counter() - start
    return OnlineResult(rule, accuracy(model, task.x_test, task.y_test), 1e3 * elapsed / (iterations * steps), memory)


def format_table(task: SequenceTask, results: list[OnlineResult]) -> str:
    lines = [f"{task.name}: test accuracy (chance {task.chance:.2f})",
             f"{'rule':<8} {'accuracy':>9} {'ms/step':>9} {'bytes/sample':>13}"]
    for r in results:
        lines.append(f"{r.rule:<8} {r.test_accuracy:>9.3f} {r.ms_per_step:>9.3f} {r.bytes_per_sample:>13,}")
    return "\n".join(lines)
