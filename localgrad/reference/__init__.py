"""Readable pure-PyTorch implementations of every op, written from the papers'
equations. They are the oracle for the tests and the fallback when the compiled
extension is missing."""

from localgrad.reference.dfa import dfa_project

__all__ = ["dfa_project"]
