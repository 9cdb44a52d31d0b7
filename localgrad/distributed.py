"""Multi-process training for rules that write `.grad` outside autograd.

DistributedDataParallel averages only the gradients autograd produces during
`backward()`. A rule that computes its update itself (EqProp, the online
learners, every later family) calls `average_gradients` after writing
`.grad`, which averages them across the ranks exactly as DDP would; at start,
`broadcast_state` gives every replica rank 0's parameters and buffers (feedback
matrices, traces, RNG counters). Both do nothing without an initialised
process group of more than one rank.

    dist.init_process_group("gloo")          # torchrun sets the rank and world size
    localgrad.distributed.broadcast_state(model)
    loss, _ = model.eqprop_step(x, y)        # each rank on its own shard of the batch
    optimizer.step()                         # .grad already averaged over the ranks
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist


def world_size(group=None) -> int:
    """Ranks in `group` (the default group when None); 1 without a process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def _buckets(tensors: list[torch.Tensor]) -> dict[tuple, list[torch.Tensor]]:
    buckets: dict[tuple, list[torch.Tensor]] = {}
    for t in tensors:
        buckets.setdefault((t.dtype, t.device), []).append(t)
    return buckets


@torch.no_grad()
def average_gradients(parameters: Iterable[torch.Tensor], group=None) -> None:
    """Replaces each parameter's `.grad` by its mean over the ranks of
    `group`: one all-reduce per dtype and device (the gradients flattened into
    one buffer). A parameter without `.grad` on one rank must have none on
    every rank."""
    n = world_size(group)
    if n == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    for bucket in _buckets(grads).values():
        flat = torch.cat([g.reshape(-1) for g in bucket])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
        flat.div_(n)
        offset = 0
        for g in bucket:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


@torch.no_grad()
def broadcast_state(module: torch.nn.Module, src: int = 0, group=None) -> None:
    """Gives every rank the parameters and buffers (feedback matrices,
    counters, traces) of rank `src`, so all replicas start identical."""
    if world_size(group) == 1:
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=src, group=group)
