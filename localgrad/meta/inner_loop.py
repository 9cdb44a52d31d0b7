"""The inner loop (an episode of T plastic steps) and the outer loop that
meta-trains a rule's parameters with any torch.optim optimizer, by backprop
through the episode (autograd).

Memory: autograd through T steps keeps every step's weights and activities,
O(T (n_out n_in + batch (n_in + n_out))) per episode. checkpoint=s keeps the
weights only every s steps and recomputes the steps in between during the
backward (torch.utils.checkpoint): O((T/s) n_out n_in + s (...)) for one more
forward. The fused inner-loop op of the plastic layers (PlasticLayer) keeps
only its T Hebbian traces, none of the per-step temporaries."""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.checkpoint import checkpoint as _checkpoint

from localgrad._checks import as_float, as_int
from localgrad.reference import meta as reference


def run_episode(rule: Callable, weight: torch.Tensor, inputs: torch.Tensor, post: torch.Tensor | None = None,
                activation: Callable | None = None, history: bool = False, checkpoint: int | None = None):
    """T plastic steps of one layer: y_t = activation(x_t W_t^T) (or post[t]),
    W_{t+1} = W_t + rule(x_t, y_t, W_t). inputs (T, ..., batch, n_in), weight
    (..., n_out, n_in), post (T, ..., batch, n_out) or None. Returns W_T (or
    [W_0, ..., W_T] if history); differentiable in the rule's parameters,
    weight and inputs. checkpoint: None, or a segment length s >= 1 (see the
    module's memory note; not with history)."""
    op = "run_episode"
    if not callable(rule):
        raise TypeError(f"{op}: rule must be callable (x, y, weight) -> dW, got {type(rule).__name__}")
    for name, t in (("weight", weight), ("inputs", inputs)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a tensor, got {type(t).__name__}")
    if weight.dim() < 2:
        raise ValueError(f"{op}: weight must be (..., n_out, n_in), got shape {tuple(weight.shape)}")
    if inputs.dim() < 3 or inputs.shape[-1] != weight.shape[-1]:
        raise ValueError(f"{op}: inputs must be (T, ..., batch, {weight.shape[-1]}) (n_in of weight), "
                         f"got shape {tuple(inputs.shape)}")
    if post is not None:
        if not isinstance(post, torch.Tensor):
            raise TypeError(f"{op}: post must be a tensor or None, got {type(post).__name__}")
        if post.shape[:-1] != inputs.shape[:-1] or post.shape[-1] != weight.shape[-2]:
            raise ValueError(f"{op}: post must have shape {(*inputs.shape[:-1], weight.shape[-2])} "
                             f"(inputs' steps and batch, weight's n_out), got {tuple(post.shape)}")
    if checkpoint is None:
        return reference.episode(rule, weight, inputs, post, activation, history)
    segment = as_int(checkpoint, op, "checkpoint", minimum=1)
    if history:
        raise ValueError(f"{op}: checkpoint keeps no history; pass history=False")

    def run_segment(w, xs, ys):
        return reference.episode(rule, w, xs, ys, activation)

    for start in range(0, inputs.shape[0], segment):
        stop = start + segment
        ys = None if post is None else post[start:stop]
        weight = _checkpoint(run_segment, weight, inputs[start:stop], ys, use_reentrant=False)
    return weight


def meta_train(meta_loss: Callable[[int], torch.Tensor], optimizer: torch.optim.Optimizer, steps: int,
               callback: Callable[[int, float], None] | None = None, clip: float | None = None) -> list[float]:
    """The outer loop by backprop: for each step, optimizer.zero_grad(),
    loss = meta_loss(step) (a scalar, typically the loss after run_episode),
    loss.backward(), optimizer.step(). Returns the losses; callback(step, loss)
    after each step (e.g. to record the coefficients). clip: None, or a
    largest norm of the meta-gradient (torch.nn.utils.clip_grad_norm_): an
    inner loop can diverge for some meta-parameters, and one such step
    would throw the rule far away."""
    steps = as_int(steps, "meta_train", "steps", minimum=0)
    if clip is not None:
        clip = as_float(clip, "meta_train", "clip", positive=True)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"meta_train: optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    losses = []
    for step in range(steps):
        optimizer.zero_grad()
        loss = meta_loss(step)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError(f"meta_train: meta_loss must return a scalar tensor, got {loss!r:.80}")
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], clip)
        optimizer.step()
        losses.append(loss.item())
        if callback is not None:
            callback(step, losses[-1])
    return losses

