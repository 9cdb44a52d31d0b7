"""CUDA-graph capture of the ops (issue 22): each op, called as the
adversarial suite's model of it calls it (tests/adversarial/op_specs.py), is
captured once and replayed; the replay must give what an eager call on the
same inputs gives. Needs a GPU (skipped elsewhere; not yet run on one).

Ops that must ask the host something cannot be captured: they are listed
with the reason, and their capture must fail loudly rather than record a
stale answer."""

from __future__ import annotations

import os
import sys

import pytest
import torch
from testing import rel_err

import localgrad

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "adversarial"))
from op_specs import SPECS  # noqa: E402

pytestmark = pytest.mark.cuda

# What a captured call changes from the spec's call: the early exit of a
# relaxation (tol > 0) and SnAp's per-call range checks read device values on
# the host; a training loop that captures turns them off.
CAPTURE_OPTIONS = {
    "eqprop_relax": {"tol": 0.0},
    "snap_step": {"check_indices": False},
}
UNCAPTURABLE = {
    "eprop_lif_chunk": "cross-entropy labels are range-checked on the host (one sync per call)",
}


def _clone(value):
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def _restore(args, saved):
    for key, value in saved.items():
        if isinstance(value, torch.Tensor):
            args[key].copy_(value)
        elif isinstance(value, list):
            for dst, src in zip(args[key], value):
                if isinstance(src, torch.Tensor):
                    dst.copy_(src)


def _on_cuda(value):
    if isinstance(value, torch.Tensor):
        return value.cuda()
    if isinstance(value, list):
        return [_on_cuda(v) for v in value]
    return value


@pytest.mark.parametrize("name", sorted(SPECS))
def test_op_replays_in_a_cuda_graph(name):
    if not torch.cuda.is_available() or not localgrad.has_cuda_kernels():
        pytest.skip("needs a GPU and localgrad's CUDA kernels")
    spec = SPECS[name]
    args = {k: _on_cuda(v) for k, v in spec.make().items()}
    args.update(CAPTURE_OPTIONS.get(name, {}))
    saved = {k: _clone(v) for k, v in args.items()}

    def call(a):
        return spec.call_ops(a)

    if name in UNCAPTURABLE:
        graph = torch.cuda.CUDAGraph()
        with pytest.raises(RuntimeError):
            with torch.cuda.graph(graph):
                call(args)
        return

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture stream, as torch.cuda.graphs asks
        call(args)
    torch.cuda.current_stream().wait_stream(side)
    _restore(args, saved)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        returned = call(args)
    _restore(args, saved)
    graph.replay()
    torch.cuda.synchronize()
    replayed = {k: v.clone() for k, v in spec.results(args, returned).items()}

    eager_args = {k: _clone(v) for k, v in saved.items()}
    expected = spec.results(eager_args, call(eager_args))
    assert replayed.keys() == expected.keys()
    for key, want in expected.items():
        got = replayed[key]
        assert not got.isnan().any() or want.isnan().any(), f"{name}: {key} left unwritten by the replay"
        assert rel_err(got.double().cpu(), want.double().cpu()) <= 1e-12, f"{name}: {key}"
