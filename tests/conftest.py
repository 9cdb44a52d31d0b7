import os

import pytest
import torch

# On the GPU machine, gpu_check.sh sets LOCALGRAD_REQUIRE_CUDA=1 so that a
# missing GPU or CUDA build fails the CUDA tests instead of skipping them.
REQUIRE_CUDA = os.environ.get("LOCALGRAD_REQUIRE_CUDA") == "1"
# CI's emulation step sets LOCALGRAD_REQUIRE_EMULATION=1: a missing emulated
# build then fails the emulated tests instead of skipping them.
REQUIRE_EMULATION = os.environ.get("LOCALGRAD_REQUIRE_EMULATION") == "1"
# Under pytest-xdist every worker is a process of its own: torch's default of
# one thread per core in each would oversubscribe the cores, and OpenMP's
# spinning threads then stretch a test 10-20 times (measured: a demo test of
# 8 s took 150 s). Each worker gets its share of the cores instead; tests
# that set a thread count still do.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT") and not os.environ.get("OMP_NUM_THREADS"):
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


def pytest_configure(config):
    import duration_budget

    config.pluginmanager.register(duration_budget, "localgrad-duration-budget")
    config.addinivalue_line("markers", "xdist_group(name): run with the other items of the group on one xdist worker")
    config.addinivalue_line("markers", "cuda: runs on a GPU (skipped without one)")
    config.addinivalue_line(
        "markers",
        "emulated: runs the CUDA kernels on the host emulation of CUDA (localgrad._C_emulated; "
        "skipped when it was not built)",
    )


def pytest_collection_modifyitems(config, items):
    import localgrad

    if not (REQUIRE_EMULATION or localgrad.build_info()["cuda_emulation"]):
        skip = pytest.mark.skip(
            reason="no emulated CUDA backend: install with LOCALGRAD_CUDA_EMULATION=1 to run these"
        )
        for item in items:
            if "emulated" in item.keywords:
                item.add_marker(skip)
    if REQUIRE_CUDA or torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no GPU: CUDA tests run on the device machine (benchmarks/gpu_check.sh)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _emulated_backend(request):
    """An emulated test sends every localgrad.ops call to the emulated CUDA
    kernels, on the default device (an H100) with 8 SMs instead of 132: only
    EqProp's launcher reads the SM count (it packs more rows into a block
    when there are more rows than SMs), so the same code paths, multi-row
    tiles included, run with a fraction of the blocks."""
    if request.node.get_closest_marker("emulated") is None:
        yield
        return
    from localgrad import ops
    from localgrad._extension import load_emulation

    emulation = load_emulation()
    emulation.reset_device_model()
    emulation.set_device_model({"sm_count": 8})
    try:
        with ops.emulated():
            yield
    finally:
        emulation.reset_device_model()


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


def pytest_sessionfinish(session, exitstatus):
    """With LOCALGRAD_EMULATION_COVERAGE=path, writes the emulation's launch
    counts (per launch site and kernel) there for
    tests/emulation/check_coverage.py."""
    path = os.environ.get("LOCALGRAD_EMULATION_COVERAGE")
    if not path:
        return
    import json

    from localgrad import _extension

    if not _extension.emulation_loaded():
        return
    counts = _extension.load_emulation().launch_counts()
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:  # each xdist worker writes its own file; the checker sums them
        path = f"{path}.{worker}"
    with open(path, "w") as f:
        json.dump(counts, f, indent=1)
