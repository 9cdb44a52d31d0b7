"""One rank of the two-rank data-parallel run behind tests/test_distributed.py.

    python tests/distributed_worker.py RANK WORLD PORT OUT

Runs every case of distributed_cases.CASES under each of its wrappers,
on this rank's shard of every batch, and saves to OUT/rank{RANK}.pt, per
(case, wrapper): the gradients after one step, the replicated state (feedback,
RNG) after it, the parameters and that state after STEPS optimizer steps, or
the error the wrapper raised. All ranks run the same cases in the same order.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
import warnings
from datetime import timedelta

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from distributed_cases import CASES, STEPS, Trainer, feedback_state  # noqa: E402
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: E402

import localgrad.distributed as ld  # noqa: E402
import localgrad  # noqa: E402
from localgrad.online import LeakyRNN  # noqa: E402

WRAPPERS = {"convert": ("ddp", "fsdp"), "learner": ("none", "fsdp")}
DFA_EXTRA = ("ddp-no-sync", "ddp-find-unused", "ddp-static-graph")
# Learners whose model is wrapped in DDP anyway (DDP sees none of their
# gradients; nothing may be averaged twice or lost).
LEARNERS_UNDER_DDP = ("learner:eqprop", "learner:rtrl", "learner:uoro", "learner:eprop-spiking")


def full(t: torch.Tensor) -> torch.Tensor:
    return (t.full_tensor() if hasattr(t, "full_tensor") else t).detach().clone()


def shard_model(model, mesh):
    from torch.distributed.fsdp import fully_shard

    # Children before their parents (a module's fully_shard takes over its
    # subtree's parameters not yet sharded): DNI's RNN case nests the
    # LeakyRNN, whose readout has parameters, under the root.
    for module in reversed(list(model.modules())):
        if module is not model and any(True for _ in module.parameters(recurse=False)):
            fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)


def wrap(trainer: Trainer, wrapper: str, mesh) -> Trainer:
    model = trainer.model
    if wrapper == "none":
        ld.broadcast_state(trainer.learner if trainer.learner is not None else model)
        trainer.net = model
    elif wrapper.startswith("ddp"):
        options = {"ddp-find-unused": {"find_unused_parameters": True}, "ddp-static-graph": {"static_graph": True}}
        trainer.net = DDP(model, **options.get(wrapper, {}))  # broadcasts rank 0's parameters and buffers
        if trainer.learner is not None:
            ld.broadcast_state(trainer.learner)  # DDP knows nothing of the learner's feedback and RNG
    else:
        ld.broadcast_state(trainer.learner if trainer.learner is not None else model)
        shard_model(model, mesh)
        trainer.net = model
    return trainer


def one_step(case, trainer, wrapper, batch, rank, world):
    part = case.shard(batch, rank, world)
    if wrapper == "ddp-no-sync":
        half = part[0].shape[0] // 2
        with trainer.net.no_sync():
            case.step(trainer, tuple(t[:half] for t in part))
        case.step(trainer, tuple(t[half:] for t in part))
    else:
        case.step(trainer, part)


def run_case(name, case, wrapper, rank, world, mesh):
    trainer = wrap(case.build(rank, case.dtype), wrapper, mesh)  # rank 1 starts from other weights and feedback
    out = {"start_feedback": feedback_state(trainer)}
    one_step(case, trainer, wrapper, case.batch(0, case.dtype), rank, world)
    out["grads"] = {n: full(p.grad) for n, p in trainer.model.named_parameters() if p.grad is not None}
    out["feedback"] = feedback_state(trainer)
    optimizer = torch.optim.SGD(trainer.model.parameters(), lr=0.05, momentum=0.9)
    for step in range(1, STEPS + 1):
        optimizer.zero_grad()
        one_step(case, trainer, wrapper, case.batch(step, case.dtype), rank, world)
        optimizer.step()
    out["final"] = {n: full(p) for n, p in trainer.model.named_parameters()}
    out["final_feedback"] = feedback_state(trainer)
    return out


def misuse_checks(rank):
    results = {}
    # .grad on one rank only: the flattened buffers would not line up.
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    if rank == 0:
        p.grad = torch.ones(3, dtype=torch.float64)
    try:
        ld.average_gradients([p])
        results["partial-grad"] = None
    except RuntimeError as e:
        results["partial-grad"] = str(e)
    # A learner given the DDP wrapper instead of the model.
    try:
        localgrad.learner(DDP(LeakyRNN(3, 4, 2)), "rtrl")
        results["ddp-learner"] = None
    except TypeError as e:
        results["ddp-learner"] = str(e)
    # iPC moves the weights inside inference by each rank's own samples.
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    try:
        localgrad.learner(model, "pc-ipc", steps=2).step(torch.randn(2, 3), torch.tensor([0, 1]))
        results["ipc"] = None
    except RuntimeError as e:
        results["ipc"] = str(e)
    # torch's global generator: rank 0's state on every rank.
    torch.manual_seed(100 + rank)
    ld.broadcast_rng_state()
    results["global-rng"] = torch.rand(4)
    return results


def main():
    rank, world, port, out_dir = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    # A rank stuck in a collective the other left errors out instead of hanging the tests.
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh("cpu", (world,))
    results, timings = {}, {}
    only = os.environ.get("LOCALGRAD_DIST_CASES")
    for name, case in CASES.items():
        if only and name not in only.split(","):
            continue
        wrappers = WRAPPERS[case.tier] + (DFA_EXTRA if name == "dfa" else ())
        wrappers += ("ddp",) if name in LEARNERS_UNDER_DDP else ()
        for wrapper in wrappers:
            t0 = time.perf_counter()
            try:
                results[name, wrapper] = run_case(name, case, wrapper, rank, world, mesh)
            except Exception as e:  # noqa: BLE001 - the test judges every error
                results[name, wrapper] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
            dist.barrier()  # a rank that failed early waits for the other before the next case
            timings[name, wrapper] = time.perf_counter() - t0
    results["misuse"] = misuse_checks(rank)
    results["timings"] = timings
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # skip the slow interpreter teardown of torch's threads
