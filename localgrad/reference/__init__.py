"""Readable pure-PyTorch implementations of every op, written from the papers'
equations. They are the oracle for the tests and the fallback when the compiled
extension is missing."""

from localgrad.reference.dfa import dfa_project
from localgrad.reference.sign_feedback import sign_feedback
from localgrad.reference.eprop_lif import eprop_lif_chunk

__all__ = ["dfa_project", "sign_feedback", "eprop_lif_chunk"]
