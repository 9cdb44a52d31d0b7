"""Typed Python entry points to localgrad's ops, and their fake kernels.

Each op lives in torch.ops.localgrad (schemas: csrc/registration.cpp); each
family has a module here (ops/<family>.py) that adds defaults and output
allocation, falls back to the reference implementation when the extension is
missing (CPU only), and registers the fake kernel that lets torch.compile
trace the op.
"""

from localgrad.ops.dfa import dfa_project
from localgrad.ops.sign_feedback import sign_feedback
from localgrad.ops.eprop_lif import eprop_lif_chunk

__all__ = ["dfa_project", "sign_feedback", "eprop_lif_chunk"]
