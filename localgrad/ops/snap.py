"""snap_step: the SnAp-n sparse influence update (schema:
csrc/registration.cpp), and its fake kernel."""

from __future__ import annotations

import torch

from localgrad import reference
from localgrad._extension import has_extension
from localgrad.ops._common import _check_alpha, _check_step, register_checked_fake, register_missing_cuda, run_op
from localgrad._checks import as_bool, as_float


def snap_step(influence, weight_hh, h_prev, x, dphi, hh_mask, alpha: float,
              entry_unit, entry_row, nbr_ptr, nbr_entry, nbr_weight, check_indices: bool = True) -> torch.Tensor:
    """M_t[k,i,:] = (1 − α) M[k,i,:] + α φ'_k (Σ_l W_kl M[l,i,:] + δ_ki v_i)
    over the kept entries e = (k, i) of the pattern (see
    localgrad.reference.online_rnn.snap_step for the index lists).

    influence: (batch, E, C); entry_unit, entry_row: (E,) int64;
    nbr_ptr: (E + 1,) int64 CSR offsets into nbr_entry / nbr_weight.

    check_indices=False skips the range checks of the index lists (on CUDA,
    9 device-to-host syncs per call): only for lists already checked and
    not changed since, as the SnAp learner's, built once from the model's
    mask; out-of-range entries then read and write out of bounds."""
    args = (influence, weight_hh, h_prev, x, dphi, hh_mask, as_float(alpha, "snap_step", "alpha"), entry_unit, entry_row, nbr_ptr,
            nbr_entry, nbr_weight)
    return run_op("snap_step", influence, reference.online_rnn.snap_step, args,
                  compiled_only=(as_bool(check_indices, "snap_step", "check_indices"),))


def _check(spec, influence, weight_hh, h_prev, x, dphi, hh_mask, alpha, entry_unit, entry_row, nbr_ptr,
           nbr_entry, nbr_weight, check_indices=True):
    """The checks of csrc/online_rnn_glue.cpp that read no data (the index
    ranges are checked by the real kernels only)."""
    _check_step(spec, h_prev, x, dphi, hh_mask, weight_hh)
    for name, t in (("entry_unit", entry_unit), ("entry_row", entry_row), ("nbr_ptr", nbr_ptr),
                    ("nbr_entry", nbr_entry), ("nbr_weight", nbr_weight)):
        spec.tensor(t, name, (None,), dtype=torch.int64)
    E = entry_unit.shape[0]
    spec.tensor(entry_row, "entry_row", (E,))
    spec.tensor(nbr_ptr, "nbr_ptr", (E + 1,))
    spec.tensor(nbr_weight, "nbr_weight", (nbr_entry.shape[0],))
    B, H, I = (spec.size[k] for k in "BHI")
    spec.tensor(influence, "influence", (B, E, I + H + 1), like=(h_prev, "h_prev"))
    _check_alpha(spec, alpha)


if has_extension():
    register_checked_fake("snap_step", _check, lambda influence, *args: influence.new_empty(influence.shape))
    register_missing_cuda("snap_step")
