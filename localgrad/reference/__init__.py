"""Readable pure-PyTorch implementations of every op, written from the papers'
equations. They are the oracle for the tests and the fallback when the compiled
extension is missing."""

from localgrad.reference.dfa import dfa_project
from localgrad.reference.eqprop import eqprop_relax, eqprop_update
from localgrad.reference.sign_feedback import sign_feedback
from localgrad.reference.eprop_lif import eprop_lif_chunk
from localgrad.reference import hebbian, meta, online_rnn, target_prop
from localgrad.reference.predictive_coding import predictive_coding_infer, predictive_coding_update

__all__ = ["dfa_project", "eqprop_relax", "eqprop_update", "sign_feedback", "eprop_lif_chunk", "hebbian", "meta",
           "online_rnn",
           "predictive_coding_infer", "predictive_coding_update", "target_prop"]
