"""snap_step: the SnAp-n sparse influence update (schema:
csrc/registration.cpp), and its fake kernel."""

from __future__ import annotations

import torch

from localgrad import reference
from localgrad._extension import has_extension
from localgrad.ops._common import compiled_ops, fall_back, register_fake, register_missing_cuda


def snap_step(influence, weight_hh, h_prev, x, dphi, hh_mask, alpha: float,
              entry_unit, entry_row, nbr_ptr, nbr_entry, nbr_weight) -> torch.Tensor:
    """M_t[k,i,:] = (1 − α) M[k,i,:] + α φ'_k (Σ_l W_kl M[l,i,:] + δ_ki v_i)
    over the kept entries e = (k, i) of the pattern (see
    localgrad.reference.online_rnn.snap_step for the index lists).

    influence: (batch, E, C); entry_unit, entry_row: (E,) int64;
    nbr_ptr: (E + 1,) int64 CSR offsets into nbr_entry / nbr_weight."""
    args = (influence, weight_hh, h_prev, x, dphi, hh_mask, float(alpha), entry_unit, entry_row, nbr_ptr,
            nbr_entry, nbr_weight)
    if (lib := compiled_ops()) is not None:
        return lib.snap_step(*args)
    fall_back("snap_step", influence)
    return reference.online_rnn.snap_step(*args)


if has_extension():

    @register_fake("snap_step")
    def _snap_step_fake(influence, weight_hh, h_prev, x, dphi, hh_mask, alpha, entry_unit, entry_row, nbr_ptr,
                        nbr_entry, nbr_weight):
        return influence.new_empty(influence.shape)

    register_missing_cuda("snap_step")
