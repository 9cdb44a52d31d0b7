"""Multi-process (data-parallel) training for every localgrad rule.

Two kinds of rule, two ways to average:

- Rules whose gradients autograd delivers (backprop, the feedback-alignment
  family: fa, usf, brsf, frsf, and dfa, ba, whose broadcast runs inside
  autograd): wrap the model in `DistributedDataParallel` (default arguments)
  or shard it with FSDP2's `fully_shard`, as for any PyTorch model.
- Rules that write `.grad` themselves (EqProp and CHL, every online learner,
  every later family): they call `average_gradients` at the end of their
  step, which averages `.grad` over the ranks exactly as DDP would. Their
  models need no wrapper (a DDP wrapper is harmless, FSDP2 is refused naming
  the rule); under an initialised process group each rank just runs the rule
  on its own shard of the batch:

    dist.init_process_group("gloo")          # or "nccl"; torchrun sets rank and world size
    localgrad.distributed.broadcast_state(model)   # or a learner: model + feedback + RNG state
    loss, _ = model.eqprop_step(x, y)        # each rank on its own, equally sized, shard
    optimizer.step()                         # .grad already averaged over the ranks

The average of the ranks' batch-mean gradients is the gradient of the union
batch when every rank holds the same number of samples (as with DDP).
`average_gradients` and `broadcast_state` do nothing without an initialised
process group of more than one rank; the group defaults to the default
process group (rules read theirs from a `process_group` attribute).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterable

import torch
import torch.distributed as dist

_warned_uninitialised = False
_averaging = True  # False inside gradient_averaging(False): average_gradients does nothing


@contextlib.contextmanager
def gradient_averaging(enabled: bool):
    """Inside `gradient_averaging(False)`, `average_gradients` leaves .grad
    as it is: a Learner runs a family's step inside it and averages once
    after (or, inside `Learner.no_sync()`, at the first step after it)."""
    global _averaging
    previous, _averaging = _averaging, bool(enabled)
    try:
        yield
    finally:
        _averaging = previous


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size(group=None) -> int:
    """Ranks in `group` (the default group when None); 1 without a process group."""
    if not is_initialized():
        return 1
    return dist.get_world_size(group)


def rank(group=None) -> int:
    """This process's rank in `group`; 0 without a process group."""
    if not is_initialized():
        return 0
    return dist.get_rank(group)


def _warn_if_launched_without_group() -> None:
    """torchrun (and most launchers) set WORLD_SIZE; a rule that averages its
    own gradients cannot see the other ranks until the process group exists."""
    global _warned_uninitialised
    if _warned_uninitialised or is_initialized():
        return
    try:
        launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        launched = False
    if launched:
        warnings.warn(
            f"localgrad.distributed: WORLD_SIZE={os.environ['WORLD_SIZE']} but no torch.distributed process "
            "group is initialised, so this rank's gradients are not averaged with the others' and the "
            "replicas drift apart; call torch.distributed.init_process_group() before training",
            RuntimeWarning,
            stacklevel=3,
        )
        _warned_uninitialised = True


def _is_sharded(t: torch.Tensor) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch without DTensor
        return False
    return isinstance(t, DTensor)


def check_replicated(parameters: Iterable[torch.Tensor], rule: str) -> None:
    """Raises, naming `rule`, when the parameters are sharded (FSDP2's
    `fully_shard` makes them DTensors): a rule that reads the full weights
    outside the model's forward cannot run on shards."""
    if any(_is_sharded(p) for p in parameters):
        _refuse_fsdp(rule)


def _refuse_fsdp(rule: str) -> None:
    raise RuntimeError(
        f"{rule} does not support FSDP2 (fully_shard): it computes its updates from the full parameters and "
        "writes .grad itself, outside the autograd pass whose gradients FSDP2 reduce-scatters into the "
        "shards. Keep the model unsharded and replicated on every rank: the rule averages its gradients "
        "itself under torch.distributed (localgrad.distributed; no DDP or FSDP wrapper needed)"
    )


def check_not_fully_sharded(module: torch.nn.Module, rule: str) -> None:
    """check_replicated for a layer whose rule runs inside its own forward,
    where FSDP2 has just gathered the full weights (so they look replicated)
    and would drop any `.grad` the rule writes: raises, naming `rule`, when
    `fully_shard` has been applied to the module."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch without FSDP2
        return
    if isinstance(module, FSDPModule):
        _refuse_fsdp(rule)


def _buckets(tensors: list[torch.Tensor]) -> dict[tuple, list[torch.Tensor]]:
    buckets: dict[tuple, list[torch.Tensor]] = {}
    for t in tensors:
        buckets.setdefault((t.dtype, t.device), []).append(t)
    return buckets


@torch.no_grad()
def average_gradients(parameters: Iterable[torch.Tensor], group=None) -> None:
    """Replaces each parameter's `.grad` by its mean over the ranks of
    `group`: one all-reduce per dtype and device (the gradients flattened into
    one buffer), plus one small all-reduce that checks every rank has `.grad`
    on the same parameters (a parameter with `.grad` on some ranks only is an
    error: the flattened buffers would not line up)."""
    n = world_size(group)
    if n == 1:
        _warn_if_launched_without_group()
        return
    if not _averaging:
        return
    params = list(parameters)
    check_replicated(params, "average_gradients")
    if not params:
        return
    nccl = dist.get_backend(group) == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=device)
    dist.all_reduce(present, op=dist.ReduceOp.SUM, group=group)
    counts = present.tolist()
    partial = [i for i, c in enumerate(counts) if 0 < c < n]
    if partial:
        raise RuntimeError(
            f"average_gradients: parameters {partial} (positions in the list passed) have .grad on "
            f"{[counts[i] for i in partial]} of {n} ranks; every rank must give .grad to the same parameters "
            "(zero_grad(set_to_none=True) on all ranks, the same steps with a loss everywhere)"
        )
    average_tensors([p.grad for p, c in zip(params, counts) if c == n], group)


@torch.no_grad()
def average_tensors(tensors: Iterable[torch.Tensor], group=None) -> None:
    """Replaces each tensor by its mean over the ranks of `group`, in place:
    one all-reduce per dtype and device (flattened into one buffer). Every
    rank must pass tensors of the same shapes in the same order. For what a
    rule needs averaged besides `.grad` (BCM's batch statistics, an update
    before its normalisation)."""
    n = world_size(group)
    if n == 1:
        _warn_if_launched_without_group()
        return
    for bucket in _buckets(list(tensors)).values():
        flat = torch.cat([t.reshape(-1) for t in bucket])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
        flat.div_(n)
        offset = 0
        for t in bucket:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


def _broadcast_tensors(tensors: list[torch.Tensor], src: int, group) -> None:
    """Broadcasts in place, one flattened buffer per dtype and device."""
    src_global = src if group is None else dist.get_global_rank(group, src)
    for bucket in _buckets([t for t in tensors if t.numel()]).values():
        flat = torch.cat([t.detach().reshape(-1) for t in bucket])
        dist.broadcast(flat, src=src_global, group=group)
        offset = 0
        for t in bucket:
            t.data.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


def _broadcast_generators(generators: list[torch.Generator], src: int, group) -> None:
    if not generators:
        return
    src_global = src if group is None else dist.get_global_rank(group, src)
    states = [g.get_state() for g in generators]
    dist.broadcast_object_list(states, src=src_global, group=group)
    for g, state in zip(generators, states):
        g.set_state(state)


def replicated_state(obj) -> tuple[list[torch.Tensor], list[torch.Generator]]:
    """What must be identical on every rank: a module's parameters and
    buffers (feedback matrices, brSF counters, masks) or, for a learner (an
    object with a `.model`), its model's plus the tensors, generators and
    modules it names in `replicated` (random feedback matrices, UORO's
    generator, DNI's synthetic-gradient modules: their parameters and buffers).
    Per-sample state (hidden states, traces) is not: each rank has its own
    samples."""
    if isinstance(obj, torch.nn.Module):
        module, extras = obj, []
    else:
        module = getattr(obj, "model", None)
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"broadcast_state: expected an nn.Module or a learner with a .model, got {type(obj).__name__}")
        extras = [getattr(obj, name) for name in getattr(obj, "replicated", ())]
    tensors = [*module.parameters(), *module.buffers()]
    for extra in extras:
        if isinstance(extra, torch.nn.Module):
            tensors += [*extra.parameters(), *extra.buffers()]
    tensors += [t for t in extras if isinstance(t, torch.Tensor)]
    generators = [g for g in extras if isinstance(g, torch.Generator)]
    return tensors, generators


@torch.no_grad()
def broadcast_state(module, src: int = 0, group=None) -> None:
    """Gives every rank the state of rank `src` that must be identical on all
    replicas: the parameters and buffers of a module (feedback matrices,
    counters), or, given a learner, its model's and the learner's random
    feedback and RNG state. Call it once at start, after building the model
    (and the learner) on every rank."""
    if world_size(group) == 1:
        _warn_if_launched_without_group()
        return
    tensors, generators = replicated_state(module)
    if any(_is_sharded(t) for t in tensors):
        raise RuntimeError(
            "broadcast_state: the module is already sharded by FSDP2 (fully_shard), whose shards differ by "
            "design; call broadcast_state before fully_shard"
        )
    _broadcast_tensors(tensors, src, group)
    _broadcast_generators(generators, src, group)


def broadcast_rng_state(src: int = 0, group=None) -> None:
    """Gives every rank torch's default CPU generator state (and the current
    CUDA device's, when CUDA is initialised) of rank `src`: for code that
    draws from the global RNG and must draw the same on every replica."""
    if world_size(group) == 1:
        return
    src_global = src if group is None else dist.get_global_rank(group, src)
    states = [torch.get_rng_state(), torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None]
    dist.broadcast_object_list(states, src=src_global, group=group)
    torch.set_rng_state(states[0])
    if states[1] is not None and torch.cuda.is_initialized():
        torch.cuda.set_rng_state(states[1])


def shard_offset(batch_size: int, group=None) -> tuple[int, int]:
    """(first sample index of this rank, samples over all ranks) when rank r
    holds samples offset_r ... offset_r + batch_size - 1 of the union batch,
    in rank order: how a rule that draws random numbers per sample draws the
    union batch's. One small all-gather; (0, batch_size) without a group."""
    n = world_size(group)
    if n == 1:
        return 0, batch_size
    sizes = [None] * n
    dist.all_gather_object(sizes, int(batch_size), group=group)
    r = rank(group)
    return sum(sizes[:r]), sum(sizes)
