"""DFA and BA compute, bit for bit, what they computed before their hidden
layers' gradients went through autograd (tests/dfa_fixture.py says how the
saved gradients were made: exact arithmetic, so no BLAS or CPU changes a bit)."""

import os
import warnings

import pytest
import torch
from dfa_fixture import CASES, compute

SAVED = torch.load(os.path.join(os.path.dirname(__file__), "data", "dfa_before_autograd.pt"))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_gradients_are_bit_identical_to_the_hook_implementation(name, dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = compute(name, dtype)
    saved = SAVED[f"{name}/{str(dtype)[6:]}"]
    assert got.keys() == saved.keys()
    for key, grad in saved.items():
        assert got[key].dtype == dtype and torch.equal(got[key], grad), key


@pytest.mark.parametrize("name", list(CASES))
def test_the_arithmetic_is_exact(name):
    # float32 and float64 agree exactly only if no rounding happened anywhere:
    # what makes the saved gradients independent of BLAS and CPU.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f64, f32 = compute(name, torch.float64), compute(name, torch.float32)
    for key in f64:
        assert torch.equal(f32[key].double(), f64[key]), key
