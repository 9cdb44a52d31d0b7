"""The demo: one model (an MLP, or a LeNet-like CNN), trained on real MNIST
digits (or the 8x8 digits, or full Fashion-MNIST) with several rules, same initial weights, data order and budget for
each; prints a comparison table and can plot test accuracy per epoch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

import localgrad
from localgrad import data
from localgrad.training import accuracy, fit, resolve_device


@dataclass
class RuleResult:
    rule: str
    test_accuracy: float
    train_loss: float
    seconds_per_epoch: float
    curve: list[float]  # test accuracy after each epoch


DEFAULT_RULES = ("backprop", "fa", "usf", "brsf", "frsf", "dfa", "eqprop", "pc", "pc-ipc", "pc-zil")
MODELS = ("mlp", "cnn", "strided")  # strided: strided_cnn, the net of the CNN ldrl row
# The Hebbian probe rows (`--mode hebbian`, localgrad.experiments.hebbian_rows): one wide
# Hebbian layer with the rule's published activation, then a linear probe on
# its frozen features, and the probe's two baselines.
HEBBIAN_ROWS = ("softhebb", "krotov", "oja", "probe-raw", "probe-random")


def lenet(n_classes: int) -> nn.Sequential:
    """LeNet-5-like (LeCun 1998), ReLU and max pooling, for 28x28 inputs."""
    return nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, n_classes),
    )


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def build_model(name: str, dataset: data.Dataset, hidden: list[int]) -> nn.Sequential:
    if name == "strided":  # backprop on the net the ldrl row trains on --model cnn: like for like
        return strided_model(dataset, hidden)
    if name == "cnn":
        if dataset.n_features != 784:
            raise ValueError("demo: the CNN takes 28x28 images; use --dataset mnist or fashion")
        return lenet(dataset.n_classes)
    return mlp([dataset.n_features, *hidden, dataset.n_classes])


def strided_cnn(n_classes: int, side: int = 28) -> nn.Sequential:
    """The target-propagation rows' CNN for side x side images: two strided
    convolutions, no pooling (16@5x5 stride 2, 28x28 -> 14x14, 32@5x5
    stride 2 -> 7x7, ReLU), then a Linear read-out."""
    out = (side + 1) // 2
    out = (out + 1) // 2
    return nn.Sequential(
        nn.Unflatten(1, (1, side, side)),
        nn.Conv2d(1, 16, 5, stride=2, padding=2),
        nn.ReLU(),
        nn.Conv2d(16, 32, 5, stride=2, padding=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * out * out, n_classes),
    )


def gait_mlp(dataset: data.Dataset, hidden: list[int]) -> nn.Sequential:
    """GAIT-prop's net (Ahmad et al. 2020): square invertible layers after
    the first (LeakyReLU), n_in-w-...-w with w the first hidden width, the
    classes read from its first outputs (cross-entropy over all w outputs,
    labels 0..n_classes-1)."""
    width = hidden[0]
    layers: list[nn.Module] = [nn.Flatten()]
    sizes = [dataset.n_features, *([width] * (len(hidden) + 1))]
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i:
            nn.init.orthogonal_(layers[-1].weight)  # invertible, well-conditioned start (Ahmad et al.)
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(0.1))
    return nn.Sequential(*layers)


def ff_mlp(dataset: data.Dataset, hidden: list[int]) -> nn.Sequential:
    """Forward-Forward's net: the demo MLP's hidden layers (ReLU after each)
    and no output layer; the ff learner predicts by the goodness accumulated
    over labels (n_classes given in ROW_OPTIONS), as Hinton 2022 does."""
    layers: list[nn.Module] = [nn.Flatten()]
    for n_in, n_out in zip([dataset.n_features, *hidden[:-1]], hidden):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers)


def strided_model(dataset: data.Dataset, hidden: list[int]) -> nn.Sequential:
    side = round(dataset.n_features ** 0.5)
    if side * side != dataset.n_features:
        raise ValueError(f"demo: the strided CNN takes square images; {dataset.name} has {dataset.n_features} "
                         "features")
    return strided_cnn(dataset.n_classes, side)


# Rows whose net is not the --model's own: GAIT-prop's square layers, and on
# --model cnn L-DRL's strided conv net (LeNet's pooling has no feedback in
# target propagation), Forward-Forward's hidden layers alone (no output layer).
ROW_MODELS = {("gait", "mlp"): gait_mlp, ("ldrl", "cnn"): strided_model, ("ff", "mlp"): ff_mlp}
# Rows' options besides the registry's defaults: iPC's in-inference weight
# step is plain SGD, and a Conv2d weight's gradient sums over every output
# position; at the default 0.01 the CNN's weights blow up within the first
# batch (stable up to about 0.002). ff's classes: its net has no output
# layer to count them (both demo datasets have 10).
ROW_OPTIONS = {("pc-ipc", "cnn"): {"ipc_lr": 1e-3}, ("ff", "mlp"): {"n_classes": 10}}


def row_model(rule: str, model_name: str, dataset: data.Dataset, hidden: list[int]) -> nn.Module:
    make = ROW_MODELS.get((rule, model_name))
    return make(dataset, hidden) if make else build_model(model_name, dataset, hidden)


def train(rule: str, dataset: data.Dataset, hidden: list[int], epochs: int, batch_size: int, lr: float | None,
          seed: int, progress: bool = True, model_name: str = "mlp") -> RuleResult:
    """One row: the rule's learner (localgrad.learner) on the row's model,
    trained by the rule's default optimizer (Learner.default_optimizer; lr
    None: the rule's own rate), same data order and budget for every row."""
    if localgrad.rule_info(rule).inputs != "static":
        raise ValueError(f"demo: {rule!r} learns sequences; use --mode online")
    torch.manual_seed(seed)
    model = row_model(rule, model_name, dataset, list(hidden)).to(dataset.x_train.device)
    learner = localgrad.learner(model, rule, seed=seed, example_input=dataset.x_train[:2],
                                **ROW_OPTIONS.get((rule, model_name), {}))
    optimizer = learner.default_optimizer(lr)

    def step(xb: torch.Tensor, yb: torch.Tensor) -> float:
        optimizer.zero_grad()
        loss = learner.step(xb, yb).loss
        optimizer.step()
        return loss.item()

    bar = tqdm(range(epochs), desc=f"{rule:>9}", disable=not progress, leave=True, dynamic_ncols=True)
    curve, loss, seconds = fit(step, dataset, batch_size, seed, bar,
                               lambda: accuracy(learner, dataset.x_test, dataset.y_test))
    return RuleResult(rule, curve[-1], loss, seconds, curve)


def format_table(results: list[RuleResult], dataset: data.Dataset, model_name: str = "mlp") -> str:
    baseline = next((r for r in results if r.rule == "backprop"), None)
    w = max([10, *(len(r.rule) for r in results)])
    lines = [
        f"{model_name} on {dataset.name}: {len(dataset.y_train)} train / {len(dataset.y_test)} test",
        f"{'rule':<{w}} {'test acc':>9} {'vs backprop':>12} {'train loss':>11} {'s / epoch':>10}",
    ]
    for r in results:
        delta = "" if baseline is None else f"{100 * (r.test_accuracy - baseline.test_accuracy):+.1f} pt"
        lines.append(
            f"{r.rule:<{w}} {100 * r.test_accuracy:>8.1f}% {delta:>12} {r.train_loss:>11.4f} {r.seconds_per_epoch:>10.3f}"
        )
    return "\n".join(lines)


def plot(results: list[RuleResult], path: str, title: str) -> None:
    """Test accuracy per epoch, one line per rule, written to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        ax.plot(range(1, len(r.curve) + 1), [100 * a for a in r.curve], label=r.rule, marker=".")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(
    rules=DEFAULT_RULES,
    dataset_name: str = "mnist",
    hidden=(256, 256),
    epochs: int = 15,
    batch_size: int = 64,
    lr: float | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    model_name: str = "mlp",
    plot_path: str | None = None,
    skip_refused: bool = False,
) -> list[RuleResult]:
    """Trains each rule's row and prints the table. skip_refused: a rule
    whose learner refuses the model (UnsupportedModelError) is left out with
    a line saying why, instead of stopping the demo."""
    device = resolve_device(device)
    dataset = load(dataset_name, seed, device)
    if model_name not in MODELS:
        raise ValueError(f"demo: model must be one of {', '.join(MODELS)}, got {model_name!r}")
    results = []
    for rule in rules:
        try:
            results.append(train(rule, dataset, list(hidden), epochs, batch_size, lr, seed, progress, model_name))
        except localgrad.UnsupportedModelError as e:
            if not skip_refused:
                raise
            print(f"{rule}: left out ({e})")
    print(format_table(results, dataset, model_name))
    if plot_path:
        try:
            plot(results, plot_path, f"{model_name} on {dataset.name}")
            print(f"wrote {plot_path}")
        except ImportError:
            print("matplotlib is not installed (pip install 'localgrad[data]'): no plot written")
    return results


def load(dataset_name: str, seed: int, device: str) -> data.Dataset:
    # Fashion-MNIST's split is the published one: the seed orders the minibatches only.
    loaders = {"mnist": data.mnist_subset, "digits": data.digits, "fashion": lambda seed: data.fashion_mnist()}
    if dataset_name not in loaders:
        raise ValueError(f"demo: dataset must be one of {', '.join(loaders)}, got {dataset_name!r}")
    return loaders[dataset_name](seed=seed).to(device)


def run_hebbian(rows=HEBBIAN_ROWS, dataset_name: str = "mnist", width: int = 2000, epochs: int = 15,
                batch_size: int = 64, seed: int = 0, device: str = "auto") -> list[RuleResult]:
    """The Hebbian probe rows (localgrad.experiments.hebbian_rows): features of one wide
    Hebbian layer, frozen, read by a linear probe; with the probe on the raw
    pixels and on random features as the baselines that judge them."""
    from localgrad.experiments import hebbian_rows

    dataset = load(dataset_name, seed, resolve_device(device))
    results = []
    for row in rows:
        acc, loss, seconds, curve = hebbian_rows.train_row(row, dataset, width, epochs, batch_size, seed)
        results.append(RuleResult(row, acc, loss, seconds, curve))
    print(format_table(results, dataset, f"Hebbian layer ({width} units) + probe"))
    return results


ONLINE_RULES = ("bptt", "rtrl", "snap-1", "rflo", "eprop", "uoro", "kfrtrl", "tbptt", "dni-rnn")


# The leak of each task's RNN: MNIST-1D's single loss at step 40 needs long
# time constants (α 0.1: a trace keeps 0.9 per step), which the delayed
# recall task does not; sequential Fashion-MNIST (one loss at step 28) likewise.
ONLINE_ALPHA = {"delayed": 0.5, "mnist1d": 0.1, "fashion": 0.1}


def run_online(task_name: str = "delayed", rules=ONLINE_RULES, hidden: int = 32, iterations: int = 150,
               batch_size: int = 32, lr: float = 1e-2, seed: int = 0, alpha: float | None = None) -> list:
    """The online mode: a leaky RNN trained on a sequence task by each online
    rule and by BPTT (localgrad.experiments.online_tasks); prints accuracy, time per step
    and learner memory per sample."""
    from localgrad.experiments import online_tasks as tasks

    loaders = {"delayed": lambda: tasks.delayed_recall(seed=seed), "mnist1d": tasks.mnist1d_sequences,
               "fashion": tasks.fashion_sequences}
    task = loaders[task_name]()
    alpha = ONLINE_ALPHA[task_name] if alpha is None else alpha
    results = [tasks.train_rule(r, task, hidden=hidden, alpha=alpha, batch_size=batch_size, iterations=iterations,
                                lr=lr, seed=seed) for r in rules]
    print(f"leaky RNN, hidden {hidden}, alpha {alpha}; {iterations} minibatches of {batch_size}, Adam {lr}")
    print(tasks.format_table(task, results))
    return results


# Meta-learned plasticity (localgrad.experiments.meta_demos): rediscover Oja's rule,
# few-shot digits with learned rules, a fixed-weight learner.
def run_meta(tasks=None, seed: int = 0, plot_path: str | None = None, progress: bool = True,
             scale: float = 1.0) -> dict:
    """The meta mode: the demos of localgrad.experiments.meta_demos (all three unless
    `tasks` names some of oja, fewshot, fixed-weight); prints their tables."""
    from localgrad.experiments import meta_demos as demos

    return demos.run(demos.TASKS if tasks is None else tasks, seed, scale, plot_path, progress)
