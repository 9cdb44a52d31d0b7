import os

import pytest
import torch

# On the GPU machine, gpu_check.sh sets LOCALGRAD_REQUIRE_CUDA=1 so that a
# missing GPU or CUDA build fails the CUDA tests instead of skipping them.
REQUIRE_CUDA = os.environ.get("LOCALGRAD_REQUIRE_CUDA") == "1"


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: runs on a GPU (skipped without one)")


def pytest_collection_modifyitems(config, items):
    if REQUIRE_CUDA or torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no GPU: CUDA tests run on the device machine (benchmarks/gpu_check.sh)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_tf32():
    """Exactness tests compare float32 CUDA results with tight tolerances:
    run them without TF32 whatever the environment enables
    (TORCH_ALLOW_TF32_CUBLAS_OVERRIDE); tests of TF32 itself turn it on."""
    if not torch.cuda.is_available():
        yield
        return
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
