"""eprop_lif_chunk: a chunk of T time steps of a LIF/ALIF spiking network with
its e-prop eligibility traces and weight update in one call (schema:
csrc/registration.cpp), and its fake kernel."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from localgrad._extension import has_extension
from localgrad.ops._common import compiled_ops, fall_back, register_fake, register_missing_cuda
from localgrad.reference import eprop_lif as reference

MODE_CODES = {"mse": 0, "ce": 1, "signal": 2}


def eprop_lif_chunk(
    x: torch.Tensor,
    weight_in: torch.Tensor,
    weight_rec: torch.Tensor,
    weight_out: torch.Tensor,
    bias_out: torch.Tensor,
    feedback: torch.Tensor,
    target: torch.Tensor | None,
    signal: torch.Tensor | None,
    neuron: Sequence[float],
    adaptive: bool,
    mode: str,
    loss_scale: float,
    state: dict[str, torch.Tensor],
    grad_w: torch.Tensor,
    grad_out: torch.Tensor,
    outputs: torch.Tensor,
) -> None:
    """Runs the equations of localgrad.reference.eprop_lif over x (T, batch,
    n_in). mode: "mse" (target (T, batch, n_out)), "ce" (int64 target (T,
    batch), < 0 = no loss that step) or "signal" (learning signal (T, batch,
    hidden) given, unfiltered traces). neuron = (alpha, rho, beta, v_th, gamma,
    kappa). state: v, a, z, psi, y, pre_trace, adapt_trace, filt_trace,
    out_trace (updated in place; a, psi, adapt_trace may be empty for LIF,
    filt_trace for mode "signal"). grad_w (hidden, n_in + hidden) and grad_out
    (n_out, hidden + 1) are accumulated; outputs (T, batch, n_out) written."""
    if mode not in MODE_CODES:
        raise ValueError(f"eprop_lif_chunk: mode must be one of {sorted(MODE_CODES)}, got {mode!r}")
    s = state
    args = (
        s["v"], s["a"], s["z"], s["psi"], s["y"], s["pre_trace"], s["adapt_trace"],
        s["filt_trace"], s["out_trace"], grad_w, grad_out, outputs,
    )  # fmt: skip
    neuron = [float(p) for p in neuron]
    if (lib := compiled_ops()) is not None:
        lib.eprop_lif_chunk(
            x, weight_in, weight_rec, weight_out, bias_out, feedback, target, signal,
            neuron, bool(adaptive), MODE_CODES[mode], float(loss_scale), *args,
        )  # fmt: skip
        return
    fall_back("eprop_lif_chunk", x)
    reference.eprop_lif_chunk(
        x, weight_in, weight_rec, weight_out, bias_out, feedback, target, signal,
        neuron, adaptive, mode, loss_scale, *args,
    )  # fmt: skip


if has_extension():

    @register_fake("eprop_lif_chunk")
    def _eprop_lif_chunk_fake(x, weight_in, weight_rec, weight_out, bias_out, feedback, target, signal,
                              neuron, adaptive, signal_mode, loss_scale, v, a, z, psi, y, pre_trace,
                              adapt_trace, filt_trace, out_trace, grad_w, grad_out, outputs):  # fmt: skip
        # Updates state and writes outputs in place; nothing to allocate.
        return None

    register_missing_cuda("eprop_lif_chunk")
