"""plastic_episode and plastic_episode_backward: a whole episode of a plastic
layer (differentiable plasticity, Miconi et al. 2018) and its backward, as
fused ops (schemas: csrc/registration.cpp), and their fake kernels. The
autograd.Function joining them is localgrad.meta.plastic.PlasticEpisode."""

from __future__ import annotations

import math

import torch

from localgrad._extension import has_extension
from localgrad.activations import Activation
from localgrad.ops._common import compiled_ops, fall_back, REALS, register_checked_fake, register_missing_cuda, Spec
from localgrad._checks import as_bool, as_float, as_int
from localgrad.reference import meta as reference

_ACTIVATIONS = tuple(int(a) for a in reference.PLASTIC_ACTIVATIONS)


def _scalars(op, eta, activation):
    eta = as_float(eta, op, "eta")
    if not 0.0 <= eta < 1.0:
        # eta = 1 forgets H_{t-1}: the backward could not recompute it.
        raise ValueError(f"{op}: eta must be in [0, 1) (the backward recomputes H_(t-1) = (H_t - eta y p^T) / "
                         f"(1 - eta)), got {eta}")
    activation = as_int(activation, op, "activation")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"{op}: activation must be 1 (identity) or 4 (tanh), got {activation}")
    return eta, activation


def plastic_episode(u, x, weight, alpha, h0, eta: float, activation: int = Activation.TANH,
                    store_traces: bool = False, modulation=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """y_t = f(u_t + (W + α ⊙ H_{t-1}) p_t), H_t = (1 - η) H_{t-1} + η y_t p_tᵀ
    for t = 1..T (localgrad.reference.meta.plastic_episode). u: (T, batch,
    n_out); x: (T, batch, n_in), or None for the recurrent layer (p_t =
    y_{t-1}, y_0 = 0); weight, alpha: (n_out, n_in); h0: (batch, n_out, n_in);
    modulation: (T, batch) m, step t's rate being eta m_t (in [0, 1)), or None.
    Returns (ys (T, batch, n_out), h_T, traces): traces (T, batch, n_out,
    n_in), H before each step, when store_traces, else an empty (0,)."""
    op = "plastic_episode"
    eta, activation = _scalars(op, eta, activation)
    store_traces = as_bool(store_traces, op, "store_traces")
    if (lib := compiled_ops()) is not None:
        return lib.plastic_episode(u, x, weight, alpha, h0, eta, activation, store_traces, modulation)
    fall_back(op, u)
    _check_forward(Spec(op), u, x, weight, alpha, h0, eta, activation, store_traces, modulation)
    _check_rates(op, eta, modulation)
    with torch.no_grad():
        traces = []
        ys, h = reference.plastic_episode(u, x, weight, alpha, eta, h0, activation, modulation,
                                          _traces=traces if store_traces else None)
        traces = (torch.stack(traces) if traces else u.new_empty(0, *h0.shape)) if store_traces else u.new_empty(0)
    return ys, h, traces


def plastic_episode_backward(grad_ys, grad_h, x, weight, alpha, ys, h_T, traces, eta: float,
                             activation: int = Activation.TANH, modulation=None):
    """The backward of plastic_episode, reading `traces` (plastic_episode's
    third output), or with traces=None recomputing them from h_T in reverse,
    which multiplies rounding errors by Π_t 1 / (1 - η m_t): exact only where
    that times the dtype's epsilon is small. This op does not check it;
    PlasticEpisode does (localgrad.meta.plastic.recompute_error_estimate). grad_h:
    dL/dh_T or None. Returns (grad_u, grad_x ((0,) when x is None),
    grad_weight, grad_alpha, grad_eta (0-d), grad_h0, grad_modulation ((0,)
    when modulation is None))."""
    op = "plastic_episode_backward"
    eta, activation = _scalars(op, eta, activation)
    if (lib := compiled_ops()) is not None:
        return lib.plastic_episode_backward(grad_ys, grad_h, x, weight, alpha, ys, h_T, traces, eta, activation,
                                            modulation)
    fall_back(op, grad_ys)
    _check_backward(Spec(op), grad_ys, grad_h, x, weight, alpha, ys, h_T, traces, eta, activation, modulation)
    _check_rates(op, eta, modulation)
    with torch.no_grad():
        return reference.plastic_episode_backward(grad_ys, grad_h, x, weight, alpha, ys, h_T, traces, eta, activation,
                                                  modulation)


def _check_rates(op, eta, modulation):
    """The data check the compiled glue makes (the fake kernels cannot)."""
    if modulation is not None and modulation.numel():
        rate = eta * modulation
        low, high = float(rate.min()), float(rate.max())
        if not (math.isfinite(low) and math.isfinite(high) and low >= 0 and high < 1):
            raise ValueError(f"{op}: eta * modulation must be in [0, 1) at every step, got values from {low} to {high}")


def _check_layer(spec, u, u_name, x, weight, alpha):
    spec.tensor(u, u_name, ("T", "B", "O"), floating=REALS)
    like = (u, u_name)
    spec.tensor(weight, "weight", ("O", "I"), like=like)
    if x is not None:
        spec.tensor(x, "x", ("T", "B", "I"), like=like)
    elif spec.size["I"] != spec.size["O"]:
        spec.fail(f"the recurrent layer (x = None) needs a square weight, got {tuple(weight.shape)}")
    spec.tensor(alpha, "alpha", ("O", "I"), like=like)


def _check_forward(spec, u, x, weight, alpha, h0, eta, activation, store_traces, modulation=None):
    _check_layer(spec, u, "u", x, weight, alpha)
    spec.tensor(h0, "h0", ("B", "O", "I"), like=(u, "u"))
    if modulation is not None:
        spec.tensor(modulation, "modulation", ("T", "B"), like=(u, "u"))
    _check_scalars(spec, eta, activation)


def _check_backward(spec, grad_ys, grad_h, x, weight, alpha, ys, h_T, traces, eta, activation, modulation=None):
    _check_layer(spec, grad_ys, "grad_ys", x, weight, alpha)
    like = (grad_ys, "grad_ys")
    spec.tensor(ys, "ys", ("T", "B", "O"), like=like)
    spec.tensor(h_T, "h_T", ("B", "O", "I"), like=like)
    if grad_h is not None:
        spec.tensor(grad_h, "grad_h", ("B", "O", "I"), like=like)
    if traces is not None:
        spec.tensor(traces, "traces", ("T", "B", "O", "I"), like=like)
    if modulation is not None:
        spec.tensor(modulation, "modulation", ("T", "B"), like=like)
    _check_scalars(spec, eta, activation)


def _check_scalars(spec, eta, activation):
    if not (math.isfinite(eta) and 0.0 <= eta < 1.0):
        spec.fail(f"eta must be in [0, 1), got {eta}")
    if activation not in _ACTIVATIONS:
        spec.fail(f"activation must be 1 (identity) or 4 (tanh), got {activation}")


def _forward_outputs(u, x, weight, alpha, h0, eta, activation, store_traces, modulation=None):
    steps, batch, n_out = u.shape
    traces = u.new_empty(steps, batch, n_out, weight.shape[1]) if store_traces else u.new_empty(0)
    return u.new_empty(u.shape), h0.new_empty(h0.shape), traces


def _backward_outputs(grad_ys, grad_h, x, weight, alpha, ys, h_T, traces, eta, activation, modulation=None):
    grad_x = x.new_empty(x.shape) if x is not None else grad_ys.new_empty(0)
    grad_m = modulation.new_empty(modulation.shape) if modulation is not None else grad_ys.new_empty(0)
    return (grad_ys.new_empty(grad_ys.shape), grad_x, weight.new_empty(weight.shape), alpha.new_empty(alpha.shape),
            grad_ys.new_empty(()), h_T.new_empty(h_T.shape), grad_m)


if has_extension() and hasattr(torch.ops.localgrad, "plastic_episode"):
    register_checked_fake("plastic_episode", _check_forward, _forward_outputs)
    register_checked_fake("plastic_episode_backward", _check_backward, _backward_outputs)
    register_missing_cuda("plastic_episode", "plastic_episode_backward")
