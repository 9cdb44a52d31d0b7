"""Data-parallel training of any registered localgrad rule on the MNIST subset.

    torchrun --nproc_per_node=2 examples/ddp_train.py --rule dfa           # CPU: gloo
    torchrun --nproc_per_node=8 examples/ddp_train.py --rule dfa --device cuda   # GPUs: nccl

Every rank reads the same shuffled order and trains on its own slice of each
global batch (--batch-size is the global batch, split evenly). Every rule runs
the same loop through its Learner (localgrad.learner), which averages its
`.grad` over the ranks itself: no DistributedDataParallel wrapper is needed.
A static rule trains the MLP 784-h-h-10; a sequence rule reads the image row
by row (28 steps of 28 pixels, batch first) with a leaky RNN (a LIF network
for the spiking rules) and names the class at the last row. At the end rank 0
prints the test accuracy and whether the replicas' parameters are identical on
all ranks. A rule that cannot train data-parallel (pc-ipc) says so.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.distributed as dist
from torch import nn

import localgrad
import localgrad.distributed as ld
from localgrad import data, online


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rule", default="dfa", choices=localgrad.rules())
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128, help="global batch, split evenly over the ranks")
    parser.add_argument("--hidden", type=int, default=None, help="default: 256; online rules 32")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    parser.add_argument("--train-samples", type=int, default=4000, help="the first N of the 4,000 training digits")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def setup(device_arg: str) -> torch.device:
    use_cuda = device_arg == "cuda" or (device_arg == "auto" and torch.cuda.is_available())
    if use_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if "RANK" in os.environ:  # started by torchrun
        dist.init_process_group("nccl" if use_cuda else "gloo", device_id=device if use_cuda else None)
    return device


def build(rule: str, hidden: int, device: torch.device) -> nn.Module:
    """The model a rule of the registry trains, by the kind of input it takes."""
    if localgrad.rule_info(rule).inputs == "static":
        return nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                             nn.Linear(hidden, 10)).to(device)
    if rule.endswith("-spiking"):
        return online.LIF(28, hidden, 10).to(device)
    return online.LeakyRNN(28, hidden, 10, alpha=0.5).to(device)


def inputs(rule: str, x: torch.Tensor) -> torch.Tensor:
    """The images as the rule reads them: flat, or 28 rows of 28 pixels (batch, time, features)."""
    return x if localgrad.rule_info(rule).inputs == "static" else x.view(-1, 28, 28)


def replicas_identical(params) -> bool:
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    if ld.world_size() == 1:
        return True
    high, low = flat.clone(), flat.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return bool(torch.equal(high, low))


def main():
    args = parse_args()
    device = setup(args.device)
    rank, world = ld.rank(), ld.world_size()
    if args.batch_size % world:
        raise SystemExit(f"--batch-size {args.batch_size} must be a multiple of the {world} ranks")
    torch.manual_seed(args.seed)
    ds = data.mnist_subset(args.seed).to(device)
    x_train, y_train = ds.x_train[: args.train_samples].flatten(1), ds.y_train[: args.train_samples]
    sequence = localgrad.rule_info(args.rule).inputs == "sequence"
    hidden = args.hidden or (32 if sequence else 256)
    model = build(args.rule, hidden, device)
    learner = localgrad.learner(model, args.rule, seed=args.seed)
    ld.broadcast_state(learner)  # rank 0's model, feedback and RNG state on every rank
    params = [*model.parameters(), *learner.parameters()]
    optimizer = torch.optim.Adam(params, lr=args.lr)
    local = args.batch_size // world
    order_rng = torch.Generator().manual_seed(args.seed)  # the same order on every rank
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        total, count = 0.0, 0
        for xb, yb in data.batches(x_train, y_train, args.batch_size, generator=order_rng):
            if xb.shape[0] < args.batch_size:
                break  # equal shards only: the mean of the ranks' means is the union batch's mean
            xs, ys = xb[rank * local:(rank + 1) * local], yb[rank * local:(rank + 1) * local]
            optimizer.zero_grad()
            total += float(learner.step(inputs(args.rule, xs), ys).loss)
            count += 1
            optimizer.step()
        if rank == 0:
            print(f"epoch {epoch + 1}: rank-0 mean loss {total / max(count, 1):.4f}", flush=True)
    seconds = time.perf_counter() - t0
    identical = replicas_identical(params)
    if rank == 0:
        with torch.no_grad():
            predicted = learner.predict(inputs(args.rule, ds.x_test.flatten(1))).argmax(1)
        acc = (predicted == ds.y_test).float().mean().item()
        print(f"rule {args.rule}, {world} rank(s) on {device.type}: test accuracy {acc:.4f}, "
              f"{seconds:.1f} s, replicas identical: {identical}", flush=True)
    if ld.is_initialized():
        # All ranks leave together: a gloo rank that tears its group down while
        # rank 0 still evaluates aborted now and then ("terminate called
        # without an active exception", 1 run in 6 here).
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
