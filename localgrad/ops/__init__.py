"""Typed Python entry points to localgrad's ops, and their fake kernels.

Each op lives in torch.ops.localgrad (schemas: csrc/registration.cpp); each
family has a module here (ops/<family>.py) that adds defaults and output
allocation, falls back to the reference implementation when the extension is
missing (CPU only), and registers the fake kernel that lets torch.compile
trace the op.
"""

from localgrad.ops._common import emulated
from localgrad.ops.dfa import dfa_project
from localgrad.ops.eqprop import eqprop_relax, eqprop_update
from localgrad.ops.sign_feedback import sign_feedback
from localgrad.ops.rtrl import rtrl_step
from localgrad.ops.snap import snap_step
from localgrad.ops.rflo import rflo_chunk
from localgrad.ops.uoro import uoro_step
from localgrad.ops.eprop_lif import eprop_lif_chunk
from localgrad.ops.hebbian import hebbian_update
from localgrad.ops.predictive_coding import predictive_coding_infer, predictive_coding_update
from localgrad.ops.kfrtrl import kfrtrl_step
from localgrad.ops.target_prop import target_prop_feedback_grads
from localgrad.ops.forward_forward import forward_forward_step

__all__ = [
    "emulated",
    "dfa_project",
    "eqprop_relax",
    "eqprop_update",
    "sign_feedback",
    "rtrl_step",
    "snap_step",
    "rflo_chunk",
    "uoro_step",
    "eprop_lif_chunk",
    "hebbian_update",
    "predictive_coding_infer",
    "predictive_coding_update",
    "kfrtrl_step",
    "target_prop_feedback_grads",
    "forward_forward_step",
]
