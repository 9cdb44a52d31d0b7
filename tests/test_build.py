"""What the package says about its own build, and its command line."""

import subprocess
import sys

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
