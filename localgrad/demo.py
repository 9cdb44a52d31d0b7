"""The demo: one model (an MLP, or a LeNet-like CNN), trained on real MNIST
digits with several rules, same initial weights, data order and budget for
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
# Rows trained as energy-based nets (localgrad.eqprop.EqPropMLP, MLP only).
EQPROP_RULES = ("eqprop", "eqprop-positive", "eqprop-negative", "chl")
# Rows of Hebbian features + a linear probe, and their baselines
# (localgrad.hebbian.rows; features of width `hebbian_width`).
HEBBIAN_ROWS = ("softhebb", "krotov", "oja", "probe-raw", "probe-random")
# Rows trained by predictive coding (localgrad.predictive_coding): demo rule ->
# variant, on the demo's own model (cross-entropy output energy, Adam); on the
# CNN they take the Conv2d path (autograd through each block, no fused op).
PC_RULES = {"pc": "il", "pc-ipc": "ipc", "pc-zil": "zil", "pc-fpa": "fpa"}
# Rows trained with synthetic gradients (localgrad.synthetic_gradients.DNI, BP(0),
# every layer decoupled): demo rule -> conditioned on the label (cDNI).
DNI_RULES = {"dni": False, "cdni": True}
# Rows trained by target propagation (localgrad.target_prop), on request (not
# in DEFAULT_RULES): demo rule -> variant. The demo's MLP, except "gait",
# whose layers 2..L must be square and invertible (tp_model); with --model
# cnn, "ldrl" trains a strided-conv net (strided_cnn: no pooling, whose
# feedback the learner has no version of).
TP_RULES = {"tp": "tp", "dtp": "dtp", "ddtp": "ddtp", "ldrl": "ldrl", "gait": "gait"}
CNN_TP_RULES = ("ldrl",)
# Rules the CNN has no version of (a linear SG module on a conv feature map
# of C*H*W units would hold (C*H*W)^2 weights: the DNI rows are MLP-only);
# the TP rows too, but CNN_TP_RULES, which --model cnn takes on request.
MLP_ONLY_RULES = (*EQPROP_RULES, *HEBBIAN_ROWS, *DNI_RULES, *TP_RULES)


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
        return tp_model("ldrl", dataset, hidden, "strided")
    if name == "cnn":
        if dataset.n_features != 784:
            raise ValueError("demo: the CNN takes 28x28 images; use --dataset mnist")
        return lenet(dataset.n_classes)
    return mlp([dataset.n_features, *hidden, dataset.n_classes])


def train(
    rule: str,
    dataset: data.Dataset,
    hidden: list[int],
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    progress: bool = True,
    model_name: str = "mlp",
    beta: float = 0.5,
    hebbian_width: int = 2000,
) -> RuleResult:
    if rule in EQPROP_RULES:
        if model_name != "mlp":
            raise ValueError(f"demo: rule {rule!r} trains an EqPropMLP; use --model mlp")
        from localgrad.eqprop import training

        bar = tqdm(range(epochs), desc=f"{rule:>9}", disable=not progress, leave=True, dynamic_ncols=True)
        acc, loss, seconds, curve = training.train(rule, dataset, list(hidden), epochs, batch_size, seed, bar, beta)
        return RuleResult(rule, acc, loss, seconds, curve)
    if rule in HEBBIAN_ROWS:
        if model_name != "mlp":
            raise ValueError(f"demo: rule {rule!r} is a Hebbian layer and a linear probe; use --model mlp")
        from localgrad.hebbian import rows

        acc, loss, seconds, curve = rows.train_row(rule, dataset, hebbian_width, epochs, batch_size, seed)
        return RuleResult(rule, acc, loss, seconds, curve)
    if rule in DNI_RULES and model_name != "mlp":
        raise ValueError(f"demo: rule {rule!r} puts linear SG modules on the MLP's layers; use --model mlp")
    if rule in TP_RULES:
        if model_name != "mlp" and rule not in CNN_TP_RULES:
            raise ValueError(f"demo: rule {rule!r} trains an MLP by target propagation; use --model mlp "
                             f"(on the CNN: {', '.join(CNN_TP_RULES)})")
        return train_tp(rule, dataset, hidden, epochs, batch_size, lr, seed, progress, model_name)
    torch.manual_seed(seed)
    model = build_model(model_name, dataset, hidden).to(dataset.x_train.device)
    params: list = [{"params": list(model.parameters())}]
    if rule in PC_RULES:
        learner = pc_learner(rule, model, model_name)
    elif rule in DNI_RULES:
        learner = dni_learner(rule, model)
        params.append({"params": list(learner.sg_parameters())})
    else:
        localgrad.convert(model, rule=rule, seed=seed, example_input=dataset.x_train[:2])
    optimizer = torch.optim.Adam(params, lr=lr)
    loss_fn = nn.CrossEntropyLoss()

    def step(xb: torch.Tensor, yb: torch.Tensor) -> float:
        optimizer.zero_grad()
        if rule in PC_RULES or rule in DNI_RULES:
            loss = learner.step(xb, yb)
        else:
            loss = loss_fn(model(xb), yb)
            loss.backward()
        optimizer.step()
        return loss.item()

    bar = tqdm(range(epochs), desc=f"{rule:>9}", disable=not progress, leave=True, dynamic_ncols=True)
    curve, loss, seconds = fit(step, dataset, batch_size, seed, bar,
                               lambda: accuracy(model, dataset.x_test, dataset.y_test))
    return RuleResult(rule, curve[-1], loss, seconds, curve)


def pc_learner(rule: str, model: nn.Module, model_name: str):
    """The demo's PredictiveCoding learner for a PC row."""
    from localgrad.predictive_coding import PredictiveCoding

    # iPC's in-inference weight step is plain SGD; a Conv2d weight's gradient
    # sums over every output position, and at the default 0.01 the CNN's
    # weights blow up within the first batch (stable up to about 0.002).
    extra = {"ipc_lr": 1e-3} if rule == "pc-ipc" and model_name == "cnn" else {}
    return PredictiveCoding(model, variant=PC_RULES[rule], loss="ce", **extra)


def dni_learner(rule: str, model: nn.Module):
    """The demo's learner for a DNI row: BP(0), every layer decoupled, a
    linear SG module at each hidden layer's output before its ReLU
    (split="pre-activation": on the demo's MLP that beat the activations'
    interfaces, 92.3 against 88.1 % for DNI at seed 0), cross-entropy; the
    SG modules train with the model's optimizer."""
    from localgrad.synthetic_gradients import DNI

    return DNI(model, split="pre-activation", conditioned=DNI_RULES[rule], loss="ce")


# The target-propagation rows' settings, tuned on this demo (README, Target
# propagation): the learner's (beta, feedback noise and form, DRL's lam,
# GAIT's gamma) and the feedback's training: its own Adam at feedback_lr,
# feedback_steps updates per minibatch (the last with the forward step),
# warmup epochs of feedback training alone first. tp, dtp and ldrl take the
# gated feedback (ours): in the papers' form s(V h + c) the demo's ReLU net
# ends 3.4 (dtp) and 7.8 (ldrl) points behind backprop, gated 2.0 and 1.8.
TP_SETTINGS = {
    "tp": {"beta": 0.1, "noise": 0.1, "feedback": "gated", "feedback_lr": 1e-2, "feedback_steps": 1, "warmup": 0},
    "dtp": {"beta": 0.1, "noise": 0.1, "feedback": "gated", "feedback_lr": 1e-2, "feedback_steps": 1, "warmup": 0},
    "ddtp": {"beta": 0.1, "noise": 0.1, "lam": 0.0, "feedback_lr": 1e-2, "feedback_steps": 1, "warmup": 0},
    "ldrl": {"beta": 0.1, "noise": 0.1, "feedback": "gated", "feedback_lr": 1e-2, "feedback_steps": 1, "warmup": 0},
    "gait": {"beta": 0.1, "gamma": 0.1},
}
_TRAINING_KNOBS = ("feedback_lr", "feedback_steps", "warmup")


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


def tp_model(rule: str, dataset: data.Dataset, hidden: list[int], model_name: str = "mlp") -> nn.Sequential:
    """The demo's MLP (with --model cnn: strided_cnn); for GAIT-prop, square
    invertible layers after the first
    (LeakyReLU, as in Ahmad et al. 2020): n_in-w-...-w with w the first hidden
    width, the classes read from its first outputs (cross-entropy over all w
    outputs, labels 0..n_classes-1)."""
    if model_name in ("cnn", "strided"):
        side = round(dataset.n_features ** 0.5)
        if side * side != dataset.n_features:
            raise ValueError(f"demo: the strided CNN takes square images; {dataset.name} has {dataset.n_features} "
                             "features")
        return strided_cnn(dataset.n_classes, side)
    if TP_RULES[rule] != "gait":
        return mlp([dataset.n_features, *hidden, dataset.n_classes])
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


def tp_learner(rule: str, model: nn.Module, seed: int):
    """The demo's TargetProp learner for a target-propagation row."""
    from localgrad.target_prop import TargetProp

    options = {k: v for k, v in TP_SETTINGS[rule].items() if k not in _TRAINING_KNOBS}
    return TargetProp(model, variant=TP_RULES[rule], loss="ce", seed=seed, **options)


def train_tp(rule, dataset, hidden, epochs, batch_size, lr, seed, progress, model_name="mlp") -> RuleResult:
    """A target-propagation row: the forward weights by Adam at `lr` (as every
    row), the feedback by its own Adam (TP_SETTINGS)."""
    torch.manual_seed(seed)
    model = tp_model(rule, dataset, list(hidden), model_name).to(dataset.x_train.device)
    learner = tp_learner(rule, model, seed)
    knobs = TP_SETTINGS[rule]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    feedback = learner.feedback_parameters()
    fb_optimizer = torch.optim.Adam(feedback, lr=knobs.get("feedback_lr", lr)) if feedback else None

    def feedback_step(xb):
        fb_optimizer.zero_grad()
        learner.train_feedback(xb)
        fb_optimizer.step()

    if fb_optimizer is not None:
        order = torch.Generator().manual_seed(seed + 1)
        for _ in range(knobs.get("warmup", 0)):
            for xb, _ in data.batches(dataset.x_train, dataset.y_train, batch_size, generator=order):
                feedback_step(xb)

    def step(xb: torch.Tensor, yb: torch.Tensor) -> float:
        if fb_optimizer is not None:
            for _ in range(knobs.get("feedback_steps", 1) - 1):
                feedback_step(xb)
            fb_optimizer.zero_grad()
        optimizer.zero_grad()
        loss = learner.step(xb, yb)
        optimizer.step()
        if fb_optimizer is not None:
            fb_optimizer.step()
        return loss.item()

    bar = tqdm(range(epochs), desc=f"{rule:>9}", disable=not progress, leave=True, dynamic_ncols=True)
    curve, loss, seconds = fit(step, dataset, batch_size, seed, bar,
                               lambda: accuracy(model, dataset.x_test, dataset.y_test))
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
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    model_name: str = "mlp",
    plot_path: str | None = None,
    beta: float = 0.5,
    hebbian_width: int = 2000,
) -> list[RuleResult]:
    device = resolve_device(device)
    loaders = {"mnist": data.mnist_subset, "digits": data.digits}
    if dataset_name not in loaders:
        raise ValueError(f"demo: dataset must be one of {', '.join(loaders)}, got {dataset_name!r}")
    dataset = loaders[dataset_name](seed=seed).to(device)
    if model_name not in MODELS:
        raise ValueError(f"demo: model must be one of {', '.join(MODELS)}, got {model_name!r}")
    results = [
        train(rule, dataset, list(hidden), epochs, batch_size, lr, seed, progress, model_name, beta, hebbian_width)
        for rule in rules
    ]
    print(format_table(results, dataset, model_name))
    if plot_path:
        try:
            plot(results, plot_path, f"{model_name} on {dataset.name}")
            print(f"wrote {plot_path}")
        except ImportError:
            print("matplotlib is not installed (pip install 'localgrad[data]'): no plot written")
    return results


ONLINE_RULES = ("bptt", "rtrl", "snap1", "rflo", "eprop", "uoro", "kfrtrl", "tbptt", "dni-rnn")


# The leak of each task's RNN: MNIST-1D's single loss at step 40 needs long
# time constants (α 0.1: a trace keeps 0.9 per step), which the delayed
# recall task does not.
ONLINE_ALPHA = {"delayed": 0.5, "mnist1d": 0.1}


def run_online(task_name: str = "delayed", rules=ONLINE_RULES, hidden: int = 32, iterations: int = 150,
               batch_size: int = 32, lr: float = 1e-2, seed: int = 0, alpha: float | None = None) -> list:
    """The online mode: a leaky RNN trained on a sequence task by each online
    rule and by BPTT (localgrad.online.tasks); prints accuracy, time per step
    and learner memory per sample."""
    from localgrad.online import tasks

    task = tasks.delayed_recall(seed=seed) if task_name == "delayed" else tasks.mnist1d_sequences()
    alpha = ONLINE_ALPHA[task_name] if alpha is None else alpha
    results = [tasks.train_rule(r, task, hidden=hidden, alpha=alpha, batch_size=batch_size, iterations=iterations,
                                lr=lr, seed=seed) for r in rules]
    print(f"leaky RNN, hidden {hidden}, alpha {alpha}; {iterations} minibatches of {batch_size}, Adam {lr}")
    print(tasks.format_table(task, results))
    return results


# Meta-learned plasticity (localgrad.meta.demos): rediscover Oja's rule,
# few-shot digits with learned rules, a fixed-weight learner.
def run_meta(tasks=None, seed: int = 0, plot_path: str | None = None, progress: bool = True,
             scale: float = 1.0) -> dict:
    """The meta mode: the demos of localgrad.meta.demos (all three unless
    `tasks` names some of oja, fewshot, fixed-weight); prints their tables."""
    from localgrad.meta import demos

    return demos.run(demos.TASKS if tasks is None else tasks, seed, scale, plot_path, progress)
