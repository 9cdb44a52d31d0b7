"""The op table (tests/adversarial/op_specs.py) drives the generic op tests:
it must hold every op that csrc/registration.cpp registers, with its
arguments in schema order; from each entry's valid call come opcheck, the
torch.compile(fullgraph=True) Inductor smoke test, the pystub check and the
emulated-vs-CPU comparison (and, in tests/adversarial, the adversarial
cases). Adding an op is adding its entry to the table."""

from __future__ import annotations

import importlib
import math
import os
import re
import sys

import pytest
import torch

import localgrad

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADVERSARIAL = os.path.join(ROOT, "tests", "adversarial")
if ADVERSARIAL not in sys.path:
    sys.path.insert(0, ADVERSARIAL)

from op_specs import SPECS  # noqa: E402

needs_extension = pytest.mark.skipif(not localgrad.has_extension(), reason="the compiled extension is not built")


def registered_ops() -> dict[str, dict]:
    """op -> {"args": argument names in order, "mutable": the Tensor(x!)
    ones, "defaulted": those with a default, "module": the set_module in force (the fake kernel's module)},
    read from csrc/registration.cpp's def(m, ...) and set_module calls."""
    with open(os.path.join(ROOT, "csrc", "registration.cpp")) as f:
        text = f.read()
    ops, module = {}, None
    pattern = r'set_module\(m,\s*"([^"]+)"\)|\bdef\(m,\s*((?:"(?:[^"\\]|\\.)*"\s*)+)\)'
    for match in re.finditer(pattern, text):
        if match.group(1):
            module = match.group(1)
            continue
        schema = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', match.group(2)))
        name, rest = schema.split("(", 1)
        depth, end = 1, 0
        for end, ch in enumerate(rest):  # the parenthesis that closes the argument list
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0:
                break
        args, mutable, defaulted = [], [], []
        for param in filter(None, (p.strip() for p in rest[:end].split(","))):
            arg = param.split("=")[0].split()[-1]
            args.append(arg)
            if "!)" in param:
                mutable.append(arg)
            if "=" in param:
                defaulted.append(arg)
        ops[name.strip()] = {"args": args, "mutable": mutable, "defaulted": defaulted, "module": module}
    return ops


# Outside a source tree (CI's tests against the installed wheel) there is no
# csrc/ to read: the table's generic tests then run over the table itself.
HAVE_SOURCES = os.path.exists(os.path.join(ROOT, "csrc", "registration.cpp"))
REGISTERED = registered_ops() if HAVE_SOURCES else {}
OPS = sorted(REGISTERED) if HAVE_SOURCES else sorted(SPECS)
needs_sources = pytest.mark.skipif(not HAVE_SOURCES, reason="no csrc/registration.cpp: not a source tree")


@needs_sources
def test_the_schema_parser_reads_every_def():
    with open(os.path.join(ROOT, "csrc", "registration.cpp")) as f:
        defs = len(re.findall(r"\bdef\(m,", f.read()))
    assert len(REGISTERED) == defs > 0


@needs_sources
def test_the_table_holds_every_registered_op():
    missing = sorted(set(REGISTERED) - set(SPECS))
    unknown = sorted(set(SPECS) - set(REGISTERED))
    assert not missing, f"ops without an entry in tests/adversarial/op_specs.py: {missing}"
    assert not unknown, f"entries in op_specs.py for ops that are not registered: {unknown}"


@needs_sources
@pytest.mark.parametrize("op", OPS)
def test_entry_follows_the_schema(op):
    spec = SPECS[op]
    schema = REGISTERED[op]
    given = list(spec.make())
    assert given == schema["args"][: len(given)], "make() must return the arguments in schema order"
    left_out = schema["args"][len(given):]
    assert set(left_out) <= set(schema["defaulted"]), f"make() leaves out arguments without a default: {left_out}"
    assert set(spec.outputs) <= set(schema["mutable"]), "outputs must be Tensor(x!) arguments"
    unchecked = set(schema["mutable"]) - set(spec.outputs)
    assert unchecked == set(getattr(spec, "unchecked_outputs", ())), (
        f"written arguments the table does not compare: {sorted(unchecked)} (list them in unchecked_outputs)")
    assert spec.anchor in schema["args"]
    assert set(spec.scalars) | set(spec.ints) <= set(schema["args"])


@needs_sources
@needs_extension
@pytest.mark.parametrize("op", OPS)
def test_op_names_the_module_of_its_fake_kernel(op):
    module = REGISTERED[op]["module"]
    assert module, f"no set_module before {op}'s def"
    assert torch._C._dispatch_pystub(f"localgrad::{op}", "") == (module, "")
    assert importlib.import_module(module).__name__ == module


def _fresh(a: dict) -> dict:
    return {k: v.clone() if isinstance(v, torch.Tensor) else [t.clone() if isinstance(t, torch.Tensor) else t
                                                               for t in v] if isinstance(v, list) else v
            for k, v in a.items()}  # fmt: skip


def _rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """Relative error, NaN where both are NaN counted as equal."""
    got, want = got.double(), want.double()
    both_nan = got.isnan() & want.isnan()
    if not torch.equal(got.isnan(), want.isnan()):
        return math.inf
    diff = (got - want).masked_fill(both_nan, 0).abs().max().item() if got.numel() else 0.0
    scale = max(want.masked_fill(both_nan, 0).abs().max().item() if want.numel() else 0.0, 1e-300)
    return diff / scale


@needs_extension
@pytest.mark.parametrize("op", OPS)
def test_opcheck(op):
    torch.library.opcheck(getattr(torch.ops.localgrad, op).default, tuple(SPECS[op].make().values()))


@needs_extension
@pytest.mark.parametrize("op", OPS)
def test_inductor_fullgraph_matches_eager(op):
    """The op under torch.compile with the Inductor backend (fullgraph), with
    a little pointwise arithmetic on what it returned or wrote for Inductor
    to generate code around (and to re-inplace the mutating ops)."""
    spec = SPECS[op]
    names = list(spec.make())

    def fn(*args):
        a = dict(zip(names, args))
        results = spec.results(a, spec.call_ops(a))
        return {k: v * 2 + 1 for k, v in results.items()}

    eager_args, compiled_args = _fresh(spec.make()), _fresh(spec.make())
    expected = fn(*eager_args.values())
    torch._dynamo.reset()
    got = torch.compile(fn, backend="inductor", fullgraph=True)(*compiled_args.values())
    assert set(got) == set(expected)
    for key in expected:
        assert got[key].dtype == expected[key].dtype and got[key].shape == expected[key].shape, key
        assert _rel_err(got[key], expected[key]) <= 1e-12, key


@pytest.mark.emulated
@pytest.mark.parametrize("op", OPS)
def test_emulated_kernels_match_cpu_kernels(op):
    """The CUDA kernels on the host emulation against the CPU kernels, on the
    table's call (the emulated build registers every op under
    torch.ops.localgrad_emulated for CPU tensors): float64 to 1e-12; float32
    judged against float64, within 4 times the CPU kernel's own float32
    error (reductions such as plastic_episode_backward's grad_eta round
    differently in another summation order)."""
    from localgrad._extension import load_emulation

    load_emulation()
    spec = SPECS[op]

    def run(namespace, dtype):
        a = _fresh(spec.make(dtype))
        return spec.results(a, getattr(namespace, op)(*a.values()))

    cpu64, emu64 = run(torch.ops.localgrad, torch.float64), run(torch.ops.localgrad_emulated, torch.float64)
    cpu32, emu32 = run(torch.ops.localgrad, torch.float32), run(torch.ops.localgrad_emulated, torch.float32)
    assert set(emu64) == set(cpu64) and set(emu32) == set(cpu32)
    for key in cpu64:
        assert _rel_err(emu64[key], cpu64[key]) <= 1e-12, (op, "float64", key)
    for key in cpu32:
        if not cpu32[key].is_floating_point():
            assert torch.equal(emu32[key], cpu32[key]), (op, "float32", key)
            continue
        own = _rel_err(cpu32[key], cpu64[key])
        assert _rel_err(emu32[key], cpu64[key]) <= 4 * own + 1e-6, (op, "float32", key, own)
