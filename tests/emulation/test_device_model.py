"""The emulated device refuses what a GPU refuses, and counts launches."""

import pytest
import torch

import localgrad
from localgrad import Activation, ops

pytestmark = pytest.mark.emulated


@pytest.fixture
def emulation():
    return localgrad._extension.load_emulation()


def dfa_call(batch):
    error = torch.randn(batch, 3)
    feedback = torch.randn(3, 40)
    h = torch.rand(batch, 40)
    return ops.dfa_project(error, feedback, [h], [int(Activation.SIGMOID)])


def test_default_device_is_an_h100(emulation):
    emulation.reset_device_model()
    model = emulation.device_model()
    assert model["sm_count"] == 132
    assert model["max_threads_per_block"] == 1024
    assert model["max_grid_dim"] == (2**31 - 1, 65535, 65535)
    assert model["shared_per_block"] == 48 * 1024
    assert model["shared_per_block_optin"] == 227 * 1024


def test_too_many_threads_fail_the_launch(emulation):
    emulation.set_device_model({"max_threads_per_block": 128})  # every kernel uses 256
    with pytest.raises(RuntimeError, match="invalid configuration argument"):
        dfa_call(5)


def test_grid_dimension_above_the_device_limit_fails(emulation):
    # The launcher keeps its own cap at 65,535, so a device with y <= 2
    # refuses 3 row tiles of 32, as a GPU refuses y = 65,536.
    emulation.set_device_model({"max_grid_dim": (2**31 - 1, 2, 65535)})
    with pytest.raises(RuntimeError, match="invalid configuration argument"):
        dfa_call(3 * 32)
    emulation.reset_device_model()
    dfa_call(3 * 32)


def test_dynamic_shared_memory_above_the_opt_in_limit_fails(emulation, monkeypatch):
    # EqProp's persistent kernel opts in to what it needs; a device whose
    # opt-in ceiling is below that refuses the attribute, and the glue says so.
    monkeypatch.setenv("LOCALGRAD_EQPROP_PATH", "persistent")
    x = torch.rand(4, 8, dtype=torch.float64)
    weights = [torch.rand(30, 8, dtype=torch.float64), torch.rand(3, 30, dtype=torch.float64)]
    biases = [torch.rand(30, dtype=torch.float64), torch.rand(3, dtype=torch.float64)]
    states = [torch.rand(4, 30, dtype=torch.float64), torch.rand(4, 3, dtype=torch.float64)]
    ops.eqprop_relax(x, weights, biases, states, steps=2)
    emulation.set_device_model({"shared_per_block": 1024, "shared_per_block_optin": 1024})
    with pytest.raises(RuntimeError, match="do not fit in shared memory"):
        ops.eqprop_relax(x, weights, biases, states, steps=2)
    assert emulation.peek_last_error() == 0


def test_launches_are_counted_per_site(emulation):
    before = {(c["site"], c["kernel"]): c["launches"] for c in emulation.launch_counts()}
    dfa_call(7)
    after = {(c["site"], c["kernel"]): c for c in emulation.launch_counts()}
    (site,) = [k for k in after if k[0].startswith("csrc/cuda/dfa_kernel.cu:")]
    assert after[site]["launches"] == before.get(site, 0) + 1
    assert after[site]["instantiations"] >= 1
