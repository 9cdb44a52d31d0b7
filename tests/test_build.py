"""What the package says about its own build, and its command line."""

import re
import subprocess
import sys

import pytest
import torch

import localgrad


def test_build_info():
    info = localgrad.build_info()
    assert info["torch"] == torch.__version__
    assert info["extension"] == localgrad.has_extension()
    if info["extension"]:
        assert info["cpu_kernels"] and info["openmp"]
        assert info["built_with_torch"] == torch.__version__.split("+")[0]
    if info["cuda_kernels"]:
        assert "8.0" in info["cuda_arch_list"] or torch.cuda.is_available()
    assert hasattr(torch.ops.localgrad, "dfa_project")


def test_cli_info_runs():
    out = subprocess.run([sys.executable, "-m", "localgrad", "info"], capture_output=True, text=True, check=True)
    assert '"cpu_kernels"' in out.stdout


def test_cuda_call_without_cuda_build_says_how_to_rebuild():
    err = localgrad._extension.cuda_build_missing_error("dfa_project")
    assert "LOCALGRAD_CUDA=1 pip install --no-build-isolation" in str(err)


def test_build_config_describes_this_build():
    config = localgrad._extension.build_config()
    if config is None:
        pytest.skip("not built by setup.py (no localgrad/_build_config.py)")
    info = localgrad.build_info()
    assert config["version"] == info["version"] and config["version"].startswith(localgrad.__version__)
    if info["extension"]:
        assert config["torch_version"] == torch.__version__
        assert config["cxx11_abi"] == bool(torch._C._GLIBCXX_USE_CXX11_ABI)
        assert ("cuda" in config["backends"]) == info["cuda_kernels"]
    if info["cuda_kernels"]:
        # As built: TORCH_CUDA_ARCH_LIST's form, +PTX kept.
        assert info["cuda_arch_list"] == config["cuda_arch_list"]
        assert all(re.fullmatch(r"\d+\.\d+a?(\+PTX)?", a) for a in info["cuda_arch_list"].split(";"))
        assert info["built_with_cuda"] == torch.version.cuda


LOAD_FAILURE = """
import sys, types, warnings
sys.modules["localgrad._C"] = None  # import localgrad._C now raises ImportError
config = types.ModuleType("localgrad._build_config")
config.__dict__.update(version="0.1.0+pt299cu999", torch_version="2.99.0+cu999", torch_cuda="99.9",
                       cuda_toolkit="99.9", cuda_arch_list="9.0+PTX", cxx11_abi=True, backends=("cpu", "cuda"))
sys.modules["localgrad._build_config"] = config
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import localgrad
print("WARNED" if any("built for torch 2.99.0" in str(w.message) for w in caught) else "SILENT")
print(localgrad.build_info()["extension_error"])
"""


def test_a_build_for_another_torch_says_so_and_how_to_rebuild():
    done = subprocess.run([sys.executable, "-c", LOAD_FAILURE], capture_output=True, text=True, check=True)
    warned, error = done.stdout.split("\n", 1)
    assert warned == "WARNED"
    assert f"built for torch 2.99.0+cu999 / CUDA 99.9, this is torch {torch.__version__}" in error
    assert "pip install --no-build-isolation" in error
