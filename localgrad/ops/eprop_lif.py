"""eprop_lif_chunk: a chunk of T time steps of a LIF/ALIF spiking network with
its e-prop eligibility traces and weight update in one call (schema:
csrc/registration.cpp), and its fake kernel."""

from __future__ import annotations

import math

from collections.abc import Sequence

import torch

from localgrad._extension import has_extension
from localgrad.ops._common import compiled_ops, fall_back, REALS, register_checked_fake, register_missing_cuda
from localgrad._checks import as_bool, as_float
from localgrad.reference import eprop_lif as reference

MODE_CODES = {"mse": 0, "ce": 1, "signal": 2}
NEURON = ("alpha", "rho", "beta", "v_th", "gamma", "kappa")


def eprop_lif_chunk(x: torch.Tensor, weight_in: torch.Tensor, weight_rec: torch.Tensor, weight_out: torch.Tensor,
                    bias_out: torch.Tensor, feedback: torch.Tensor, target: torch.Tensor | None,
                    signal: torch.Tensor | None, neuron: Sequence[float], adaptive: bool, mode: str, loss_scale: float,
                    state: dict[str, torch.Tensor], grad_w: torch.Tensor, grad_out: torch.Tensor, outputs: torch.Tensor
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
    op = "eprop_lif_chunk"
    neuron = [as_float(p, op, f"{NEURON[i]} (neuron[{i}])") for i, p in enumerate(neuron)]
    adaptive, loss_scale = as_bool(adaptive, op, "adaptive"), as_float(loss_scale, op, "loss_scale")
    if (lib := compiled_ops()) is not None:
        lib.eprop_lif_chunk(
            x, weight_in, weight_rec, weight_out, bias_out, feedback, target, signal,
            neuron, adaptive, MODE_CODES[mode], loss_scale, *args,
        )  # fmt: skip
        return
    fall_back("eprop_lif_chunk", x)
    reference.eprop_lif_chunk(
        x, weight_in, weight_rec, weight_out, bias_out, feedback, target, signal,
        neuron, adaptive, mode, loss_scale, *args,
    )  # fmt: skip


def _check(spec, x, weight_in, weight_rec, weight_out, bias_out, feedback, target, signal, neuron, adaptive,
           signal_mode, loss_scale, v, a, z, psi, y, pre_trace, adapt_trace, filt_trace, out_trace, grad_w,
           grad_out, outputs):  # fmt: skip
    """The checks of csrc/eprop_lif_glue.cpp that read no data (labels >= n_out
    are refused by the real kernels only)."""
    spec.tensor(x, "x", ("T", "B", "I"), floating=REALS)
    if not 0 <= signal_mode < 3:
        spec.fail(f"signal_mode must be 0 (mse), 1 (cross-entropy) or 2 (given signal), got {signal_mode}")
    if len(neuron) != 6:
        spec.fail(f"neuron must hold (alpha, rho, beta, v_th, gamma, kappa), got {len(neuron)} values")
    for i, value in enumerate(neuron):
        if not math.isfinite(value):
            spec.fail(f"{NEURON[i]} (neuron[{i}]) must be finite, got {value}")
    if not neuron[3] > 0:
        spec.fail(f"v_th (neuron[3]) must be positive, got {neuron[3]}")
    if not math.isfinite(loss_scale):
        spec.fail(f"loss_scale must be finite, got {loss_scale}")
    like = (x, "x")
    spec.tensor(weight_rec, "weight_rec", ("H", "H"), like=like)
    spec.tensor(weight_out, "weight_out", ("K", "H"), like=like)
    T, B, I, H, K = (spec.size[k] for k in "TBIHK")
    P = I + H
    spec.tensor(weight_in, "weight_in", (H, I), like=like)
    spec.tensor(bias_out, "bias_out", (K,), like=like)
    spec.tensor(feedback, "feedback", (K, H), like=like)
    if signal_mode == 2:
        if signal is None:
            spec.fail("signal_mode 2 (given signal) needs signal (T, batch, hidden)")
        spec.tensor(signal, "signal", (T, B, H), like=like)
    else:
        if target is None:
            spec.fail(f"signal_mode {signal_mode} needs target")
        if signal_mode == 0:
            spec.tensor(target, "target", (T, B, K), like=like)
        else:
            if K < 1:
                spec.fail("cross-entropy needs at least one output (weight_out has 0 rows)")
            spec.tensor(target, "target", (T, B), dtype=torch.int64)
    states = [(v, "v", (B, H)), (z, "z", (B, H)), (y, "y", (B, K)), (pre_trace, "pre_trace", (B, P)),
              (out_trace, "out_trace", (B, H + 1)), (grad_w, "grad_w", (H, P)), (outputs, "outputs", (T, B, K))]
    if adaptive:
        states += [(a, "a", (B, H)), (psi, "psi", (B, H)), (adapt_trace, "adapt_trace", (B, H, P))]
    if signal_mode != 2:
        states += [(filt_trace, "filt_trace", (B, H, P)), (grad_out, "grad_out", (K, H + 1))]
    for t, name, shape in states:
        spec.tensor(t, name, shape, like=like)
        spec.contiguous(t, name)


if has_extension():
    # Updates state and writes outputs in place; nothing to allocate.
    register_checked_fake("eprop_lif_chunk", _check, lambda *args: None)
    register_missing_cuda("eprop_lif_chunk")
