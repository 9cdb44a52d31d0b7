"""Typed Python entry points to localgrad's ops, and their fake kernels.

Each op lives in torch.ops.localgrad (schemas: csrc/registration.cpp); each
family has a module here (ops/<family>.py) that adds defaults and output
allocation, falls back to the reference implementation when the extension is
missing (CPU only), and registers the fake kernel that lets torch.compile
trace the op.
"""

from localgrad.ops.dfa import dfa_project
from localgrad.ops.eqprop import eqprop_relax, eqprop_update
from localgrad.ops.sign_feedback import sign_feedback

__all__ = ["dfa_project", "eqprop_relax", "eqprop_update", "sign_feedback"]
