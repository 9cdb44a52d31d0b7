"""Data-parallel training of any localgrad rule on the MNIST subset.

    torchrun --nproc_per_node=2 examples/ddp_train.py --rule dfa           # CPU: gloo
    torchrun --nproc_per_node=8 examples/ddp_train.py --rule dfa --device cuda   # GPUs: nccl

Every rank reads the same shuffled order and trains on its own slice of each
global batch (--batch-size is the global batch, split evenly). Rules trained
through autograd (backprop, fa, usf, brsf, frsf, dfa, ba) run under
DistributedDataParallel with default arguments; EqProp / CHL and the online
learners (rtrl, snap, rflo, eprop, uoro, kfrtrl, bptt: the image read row by
row, 28 steps, the class predicted at the last), predictive coding (pc,
pc-zil, pc-fpa), synthetic gradients (dni, cdni) and target propagation
(dtp, ddtp, ldrl; their feedback trained by the same optimizer) average
their gradients themselves, so their models are not wrapped. At the end rank 0 prints the test accuracy
and whether the replicas' parameters are identical on all ranks.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

import localgrad
import localgrad.distributed as ld
from localgrad import data

CONVERT_RULES = localgrad.RULES
EQPROP_RULES = ("eqprop", "chl")
ONLINE_RULES = ("rtrl", "snap", "rflo", "eprop", "uoro", "kfrtrl", "bptt")
# Learners of the MLP with a step(x, y) that averages over the ranks itself.
LEARNER_RULES = ("pc", "pc-zil", "pc-fpa", "dni", "cdni", "dtp", "ddtp", "ldrl")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rule", default="dfa", choices=(*CONVERT_RULES, *EQPROP_RULES, *LEARNER_RULES, *ONLINE_RULES))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128, help="global batch, split evenly over the ranks")
    parser.add_argument("--hidden", type=int, default=None, help="default: 256; online rules 32")
    parser.add_argument("--lr", type=float, default=None, help="default: 1e-3 (Adam), EqProp 0.1 (SGD)")
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


def build(rule: str, hidden: int, lr: float | None, device: torch.device):
    """(model to train, step(x, y) -> loss, optimizer)."""
    if rule in CONVERT_RULES:
        model = nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                              nn.Linear(hidden, 10))
        localgrad.convert(model, rule=rule, seed=0)
        model.to(device)
        net = DDP(model) if ld.world_size() > 1 else model  # default arguments
        optimizer = torch.optim.Adam(model.parameters(), lr=lr or 1e-3)

        def step(x, y):
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            return loss

        return model, step, optimizer
    if rule in EQPROP_RULES:
        from localgrad.eqprop import EqPropMLP

        model = EqPropMLP([784, hidden, 10], mode=rule).to(device)
        ld.broadcast_state(model)
        lr = lr or 0.1
        groups = [{"params": layer.parameters(), "lr": lr / 2**i} for i, layer in enumerate(model.layers)]
        optimizer = torch.optim.SGD(groups, momentum=0.9)
        return model, lambda x, y: model.eqprop_step(x, y)[0], optimizer
    if rule in LEARNER_RULES:
        model = nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                              nn.Linear(hidden, 10)).to(device)
        if rule.startswith("pc"):
            from localgrad.predictive_coding import PredictiveCoding

            learner = PredictiveCoding(model, variant={"pc": "il", "pc-zil": "zil", "pc-fpa": "fpa"}[rule], loss="ce")
            extra = []
        elif rule in ("dni", "cdni"):
            from localgrad.synthetic_gradients import DNI

            learner = DNI(model, split="pre-activation", conditioned=rule == "cdni", loss="ce")
            extra = learner.sg_parameters()
        else:
            from localgrad.target_prop import TargetProp

            learner = TargetProp(model, variant=rule, loss="ce", feedback="nonlinear" if rule == "ddtp" else "gated")
            extra = learner.feedback_parameters()
        ld.broadcast_state(learner)  # the model, and the learner's modules and generator
        optimizer = torch.optim.Adam([*model.parameters(), *extra], lr=lr or 1e-3)
        return model, learner.step, optimizer
    from localgrad import online

    model = online.LeakyRNN(28, hidden, 10, alpha=0.5).to(device)
    learner = {"rtrl": online.RTRL, "snap": online.SnAp, "rflo": online.RFLO, "eprop": online.EProp,
               "uoro": online.UORO, "kfrtrl": online.KFRTRL, "bptt": online.BPTT}[rule](model, loss="ce")
    ld.broadcast_state(learner)  # the model, and the learner's random feedback / RNG state
    optimizer = torch.optim.Adam(model.parameters(), lr=lr or 1e-3)
    last_step_only = torch.zeros(28, dtype=torch.bool)
    last_step_only[-1] = True

    def step(x, y):
        xs = x.view(-1, 28, 28).transpose(0, 1)  # (28 rows, batch, 28 pixels)
        learner.reset(xs.shape[1])
        return learner.run(xs, y.expand(28, -1), loss_mask=last_step_only)

    class Reader(nn.Module):  # the RNN's class prediction at the last row, for the accuracy
        def forward(self, x):
            ys, _ = model(x.view(-1, 28, 28).transpose(0, 1))
            return ys[-1]

    return Reader(), step, optimizer


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
    hidden = args.hidden or (32 if args.rule in ONLINE_RULES else 256)
    model, step, optimizer = build(args.rule, hidden, args.lr, device)
    params = [p for group in optimizer.param_groups for p in group["params"]]
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
            total += float(step(xs, ys).detach())
            count += 1
            optimizer.step()
        if rank == 0:
            print(f"epoch {epoch + 1}: rank-0 mean loss {total / max(count, 1):.4f}", flush=True)
    seconds = time.perf_counter() - t0
    identical = replicas_identical(params)
    if rank == 0:
        acc = localgrad.training.accuracy(model, ds.x_test.flatten(1), ds.y_test)
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
