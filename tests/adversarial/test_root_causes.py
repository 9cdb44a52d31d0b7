"""One regression test per root cause of issue 15 (F1-F15) and per
correctness item of issue 22 taken here (R1-R3, S1, S3, S6, S8), each built
from its reproducer. Device-generic: every test that calls an op runs on
every device of tests/testing.py's DEVICES."""

from __future__ import annotations

import math
import os
import warnings

import pytest
import torch
from testing import DEVICES
from torch import nn

import localgrad
from localgrad import ops, reference
from localgrad.reference import eprop_lif as ref_eprop

pytestmark = pytest.mark.skipif(not localgrad.has_extension(), reason="compiled extension not built")

NAN, INF = float("nan"), float("inf")
L = torch.ops.localgrad


def _eprop_args(device, dtype=torch.float64, mode=1, batch=2, adaptive=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    T, I, H, K = 5, 3, 4, 3
    P = I + H
    r = lambda *s, scale=1.0: (torch.randn(*s, generator=g, dtype=torch.float64) * scale).to(dtype)  # noqa: E731
    w_rec = r(H, H, scale=0.5)
    w_rec.fill_diagonal_(0)
    z = lambda *s: torch.zeros(*s, dtype=dtype)  # noqa: E731
    target = torch.randint(0, K, (T, batch), generator=g) if mode == 1 else r(T, batch, K)
    a = dict(x=r(T, batch, I, scale=2), weight_in=r(H, I, scale=1.5), weight_rec=w_rec, weight_out=r(K, H),
             bias_out=r(K, scale=0.1), feedback=r(K, H), target=target, signal=None,
             neuron=[0.9, 0.95, 0.5, 1.0, 0.3, 0.8], adaptive=adaptive, signal_mode=mode, loss_scale=0.5,
             v=r(batch, H, scale=0.3), a=z(batch, H), z=z(batch, H), psi=z(batch, H), y=z(batch, K),
             pre_trace=z(batch, P), adapt_trace=z(batch, H, P), filt_trace=z(batch, H, P), out_trace=z(batch, H + 1),
             grad_w=z(H, P), grad_out=z(K, H + 1), outputs=z(T, batch, K))  # fmt: skip
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in a.items()}


STATE = ("v", "a", "z", "psi", "y", "pre_trace", "adapt_trace", "filt_trace", "out_trace", "grad_w", "grad_out",
         "outputs")  # fmt: skip


def _eprop_reference(a):
    b = {k: (v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v) for k, v in a.items()}
    mode = {0: "mse", 1: "ce", 2: "signal"}[b["signal_mode"]]
    ref_eprop.eprop_lif_chunk(*(b[k] for k in ("x", "weight_in", "weight_rec", "weight_out", "bias_out", "feedback",
                                               "target", "signal", "neuron", "adaptive")),
                              mode, b["loss_scale"], *(b[k] for k in STATE))  # fmt: skip
    return b


def _close_nan(actual, expected, tol=1e-10):
    actual, expected = actual.detach().cpu().double(), expected.detach().cpu().double()
    assert torch.equal(actual.isnan(), expected.isnan())
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol, equal_nan=True)


# F1 ---------------------------------------------------------------------------


def _snap_call(nbr_ptr, device):
    z = lambda *s: torch.zeros(*s, device=device)  # noqa: E731
    t = lambda *v: torch.tensor(v, device=device)  # noqa: E731
    return (z(1, 2, 4), z(2, 2), z(1, 2), z(1, 1), z(1, 2), None, 0.5, t(0, 1), t(0, 1), nbr_ptr, t(0), t(0))


@pytest.mark.parametrize("device", DEVICES)
def test_f1_strided_nbr_ptr_is_read_through_its_strides(device):
    raw = torch.tensor([0, 0, 1, 10**9, 10**9], device=device)
    with pytest.raises(ValueError, match="nbr_ptr must start at 0 and end at len"):
        L.snap_step(*_snap_call(raw[::2], device))
    # A valid strided (and an expanded-free sliced) nbr_ptr is accepted and
    # gives the reference's result (the old check read raw memory and refused it).
    good = torch.tensor([0, 7, 0, 7, 1], device=device)[::2]
    args = _snap_call(good, device)
    got = L.snap_step(*args)
    expected = reference.online_rnn.snap_step(*[a.cpu() if isinstance(a, torch.Tensor) else a for a in args])
    _close_nan(got, expected)


# F2, F3 -------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_f2_dfa_out_aliasing_activations_or_error_is_refused(device):
    g = torch.Generator().manual_seed(0)
    e = torch.randn(4, 3, generator=g).to(device)
    fb = torch.randn(3, 7, generator=g).to(device)
    h = list(torch.randn(4, 7, generator=g).tanh().to(device).split([5, 2], 1))
    with pytest.raises(ValueError, match=r"out\[0\] \(written\) shares memory with activations\[0\]"):
        L.dfa_project(e, fb, h, [4, 4], [0.0, 0.0], h)
    e5 = torch.randn(4, 5, generator=g).to(device)
    with pytest.raises(ValueError, match=r"out\[0\] \(written\) shares memory with error"):
        L.dfa_project(e5, torch.randn(5, 7).to(device), h, [4, 4], [0.0, 0.0],
                      [e5, torch.empty(4, 2, device=device)])  # fmt: skip
    # separate buffers: the reference's result
    out = [torch.empty(4, 5, device=device), torch.empty(4, 2, device=device)]
    L.dfa_project(e, fb, h, [4, 4], [0.0, 0.0], out)
    for o, r in zip(out, reference.dfa_project(e.cpu(), fb.cpu(), [t.cpu() for t in h], [4, 4], [0.0, 0.0], [5, 2])):
        _close_nan(o, r, 1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_f3_overlapping_and_aliased_outputs_are_refused(device):
    x = torch.rand(3, 4, device=device)
    w = [torch.randn(5, 4, device=device), torch.randn(5, 5, device=device)]
    b = [torch.zeros(5, device=device), torch.zeros(5, device=device)]
    with pytest.raises(ValueError, match=r"states\[0\] is written in place but some of its elements share memory"):
        L.eqprop_relax(x, w, b, [torch.zeros(5, device=device).expand(3, 5), torch.zeros(3, 5, device=device)],
                       None, 0.0, 0, 0, 3, False, 0.0)  # fmt: skip
    s = torch.zeros(3, 5, device=device)
    with pytest.raises(ValueError, match=r"states\[0\] \(written\) shares memory with states\[1\]"):
        L.eqprop_relax(x, w, b, [s, s], None, 0.0, 0, 0, 3, False, 0.0)
    with pytest.raises(ValueError, match=r"out\[0\] is written in place"):
        L.dfa_project(torch.randn(3, 2, device=device), torch.randn(2, 4, device=device), [None], [1], [0.0],
                      [torch.zeros(4, device=device).expand(3, 4)])  # fmt: skip
    weight = torch.randn(4, 4, device=device)
    with pytest.raises(ValueError, match="out \\(written\\) shares memory with weight"):
        L.sign_feedback(weight, 0, 0, 1.0, False, weight)
    with pytest.raises(ValueError, match="out \\(written\\) shares memory with weight"):  # partial overlap
        L.sign_feedback(weight.view(-1)[2:6].view(2, 2), 0, 0, 1.0, False, weight.view(-1)[:4].view(2, 2))
    a = _eprop_args(device)
    a["v"] = a["z"]
    with pytest.raises(ValueError, match="v \\(written\\) shares memory with z"):
        L.eprop_lif_chunk(*a.values())


# F4 / S8 ----------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_f4_s8_cross_entropy_labels_must_be_below_n_out(device):
    a = _eprop_args(device)
    a["target"] = a["target"].clone()
    a["target"][2, 1] = 3  # n_out = 3
    with pytest.raises(ValueError, match=r"target holds class 3 but weight_out has 3 outputs"):
        L.eprop_lif_chunk(*a.values())
    with pytest.raises(IndexError):  # the reference raises too
        _eprop_reference(a)
    a["target"][2, 1] = -1  # "no loss this step" stays allowed
    L.eprop_lif_chunk(*a.values())


# F5, F6, F7 --------------------------------------------------------------------------


def _shared_model():
    torch.manual_seed(0)
    shared = nn.Linear(6, 6)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), shared, nn.Tanh(), shared, nn.Tanh(), nn.Linear(6, 3))


@pytest.mark.parametrize("rule", ["fa", "usf", "brsf", "frsf"])
def test_f5_a_shared_module_is_converted_at_every_position(rule):
    model = localgrad.convert(_shared_model(), rule)
    assert model[2] is model[4] and type(model[2]).__name__ == "FALinear"
    model(torch.randn(3, 4)).sum().backward()
    assert model[2].weight.grad is not None and model[2].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("rule", ["dfa", "ba"])
def test_f5_dfa_refuses_a_shared_module(rule):
    with pytest.raises(ValueError, match=r"used at several positions \('2', '4'\)"):
        localgrad.convert(_shared_model(), rule)


class _FirstTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.first, self.out = nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x):
        return self.out(torch.tanh(self.first(torch.tanh(self.first(x)))))


def test_f6_dfa_first_layer_twice_in_one_forward_raises():
    model = localgrad.convert(_FirstTwice(), "dfa")
    with pytest.raises(RuntimeError, match="layer 'first' ran twice in one forward"):
        model(torch.randn(2, 4))
    # after the error, an ordinary forward of the layers still works
    plain = localgrad.convert(nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 3)), "dfa")
    for _ in range(2):
        plain(torch.randn(2, 4)).sum().backward()


@pytest.mark.parametrize("rule", ["fa", "usf", "brsf", "frsf", "dfa", "ba"])
@pytest.mark.parametrize("scale", [NAN, INF, 0.0, -1.0])
def test_f7_feedback_scale_must_be_positive_and_finite(rule, scale):
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    with pytest.raises(ValueError, match="convert: feedback_scale must"):
        localgrad.convert(model, rule, feedback_scale=scale)


# F8 / R2 / R3 -----------------------------------------------------------------------


def _relax_args(device, dtype=torch.float64, batch=4, width=6):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(batch, 5, generator=g, dtype=torch.float64).to(dtype)
    w = [(torch.randn(width, 5, generator=g, dtype=torch.float64) * 0.1).to(dtype),
         (torch.randn(3, width, generator=g, dtype=torch.float64) * 0.1).to(dtype)]  # fmt: skip
    b = [torch.zeros(width, dtype=dtype), torch.zeros(3, dtype=dtype)]
    s = [torch.zeros(batch, width, dtype=dtype), torch.zeros(batch, 3, dtype=dtype)]
    x[1, 2] = NAN
    return [t.to(device) for t in (x,)], [t.to(device) for t in w], [t.to(device) for t in b], [t.to(device) for t in s]


def _paths(device):
    return [None, "persistent", "step"] if torch.device(device).type == "cuda" else [None]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_f8_r2_a_nan_row_never_converges_on_any_path(device, dtype, monkeypatch):
    (x,), w, b, s = _relax_args(device, dtype)
    _, expected = reference.eqprop_relax(x.cpu(), [t.cpu() for t in w], [t.cpu() for t in b], [t.cpu() for t in s],
                                         None, 0.0, 0, 0, 10, False, 1e-3)  # fmt: skip
    assert expected[1] == 10 and expected[0] < 10
    for path in _paths(device):
        if path is None:
            monkeypatch.delenv("LOCALGRAD_EQPROP_PATH", raising=False)
        else:
            monkeypatch.setenv("LOCALGRAD_EQPROP_PATH", path)
        states = [t.clone() for t in s]
        ran = L.eqprop_relax(x, w, b, states, None, 0.0, 0, 0, 10, False, 1e-3)
        assert ran.cpu().tolist() == expected.tolist(), path


@pytest.mark.parametrize("device", DEVICES)
def test_r3_float32_compares_the_change_with_tol_in_float32(device, monkeypatch):
    # One layer driven by its bias alone: step 1 moves by exactly b (a float32
    # number), step 2 by 0. tol is b plus less than half a float32 ulp: in
    # float32 the first change is not below tol (the reference's comparison),
    # in double it would be.
    bias = torch.tensor([0.3], dtype=torch.float32)
    tol = float(bias[0]) + 1e-12
    assert float(torch.tensor(tol, dtype=torch.float32)) == float(bias[0])
    args = lambda: (torch.zeros(2, 1, device=device), [torch.zeros(1, 1, device=device)],  # noqa: E731
                    [bias.to(device)], [torch.zeros(2, 1, device=device)])  # fmt: skip
    x, w, bs, st = args()
    _, expected = reference.eqprop_relax(x.cpu(), [w[0].cpu()], [bs[0].cpu()], [st[0].cpu()], None, 0.0, 0, 0, 5,
                                         False, tol)  # fmt: skip
    assert expected.tolist() == [2, 2]
    for path in _paths(device):
        if path:
            monkeypatch.setenv("LOCALGRAD_EQPROP_PATH", path)
        x, w, bs, st = args()
        assert L.eqprop_relax(x, w, bs, st, None, 0.0, 0, 0, 5, False, tol).cpu().tolist() == [2, 2], path


# F9 / R1 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("random_magnitude", [False, True])
def test_f9_r1_a_nan_weight_gets_zero_feedback_everywhere(device, dtype, random_magnitude):
    w = torch.tensor([[NAN, -2.0, 0.0], [3.0, NAN, -NAN]], dtype=dtype, device=device)
    out = torch.full_like(w, 7.0)
    L.sign_feedback(w, 5, 2, 0.5, random_magnitude, out)
    expected = reference.sign_feedback(w.cpu(), 5, 2, 0.5, random_magnitude)
    assert torch.equal(out.cpu(), expected)
    assert (out.cpu()[w.cpu().isnan()] == 0).all()


# F10 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_f10_non_binary_initial_spikes_follow_the_reference(device):
    a = _eprop_args(device)
    a["z"].fill_(0.5)
    expected = _eprop_reference(a)
    L.eprop_lif_chunk(*a.values())
    for k in STATE:
        _close_nan(a[k], expected[k], 1e-9)


@pytest.mark.parametrize("device", DEVICES)
def test_f10_nan_membrane_gives_nan_psi_as_the_reference(device):
    a = _eprop_args(device)
    a["v"][0, 1] = NAN
    expected = _eprop_reference(a)
    L.eprop_lif_chunk(*a.values())
    assert a["psi"].isnan().any()
    for k in STATE:
        _close_nan(a[k], expected[k], 1e-9)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("index,value", [(3, INF), (3, NAN), (0, NAN), (5, INF)])
def test_f10_non_finite_neuron_constants_are_refused(device, index, value):
    a = _eprop_args(device)
    a["neuron"] = list(a["neuron"])
    a["neuron"][index] = value
    name = ("alpha", "rho", "beta", "v_th", "gamma", "kappa")[index]
    with pytest.raises(ValueError, match=rf"{name} \(neuron\[{index}\]\) must be finite"):
        L.eprop_lif_chunk(*a.values())


# F11 ---------------------------------------------------------------------------------


def test_f11_meta_tensor_among_cpu_tensors_raises():
    x = torch.randn(2, 3)
    w = torch.randn(3, 3)
    with pytest.raises(RuntimeError, match="h_prev is on meta but influence is on cpu|influence is on"):
        L.rtrl_step(torch.zeros(2, 3, 21), w, torch.zeros(2, 3, device="meta"), x[:, :3], torch.ones(2, 3), None, 0.5)
    out = torch.full((3, 3), 7.0)
    with pytest.raises(RuntimeError, match="meta"):
        L.sign_feedback(w.to("meta"), 0, 0, 1.0, False, out)
    assert (out == 7).all()


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m: L.rtrl_step(m(2, 3, 20), m(3, 3), m(2, 3), m(2, 3), m(2, 3), None, 0.5), "influence must have shape"),
        (lambda m: L.dfa_project(m(2, 3), m(4, 5), [m(2, 5)], [4], [0.0], [m(2, 5)]), "feedback must have shape"),
        (lambda m: L.eqprop_relax(m(2, 3), [m(4, 3)], [m(5)], [m(2, 4)], None, 0.0, 0, 0, 1, False, 0.0),
         r"biases\[0\] must have shape"),
        (lambda m: L.sign_feedback(m(2, 3), 0, 0, 1.0, False, m(3, 2)), "out must have the shape of weight"),
        (lambda m: L.uoro_step(m(2, 3), m(2, 3, 6), m(3, 3), m(2, 3), m(2, 3), m(2, 2), m(2, 3), None, 0.5, 0.0),
         "eps must be positive"),
        (lambda m: L.rflo_chunk(m(2, 3, 6), m(4, 3, 2), m(4, 2, 3), m(4, 2, 3), m(4, 2, 3), None, 0.5),
         "xs must have shape"),
    ],
)
def test_f11_fake_kernels_check_what_the_real_ones_check(call, match):
    meta = lambda *s: torch.zeros(*s, device="meta")  # noqa: E731
    cpu = lambda *s: torch.zeros(*s)  # noqa: E731
    with pytest.raises(ValueError, match=match):
        call(meta)
    with pytest.raises(ValueError):
        call(cpu)


def test_f11_fake_kernels_trace_valid_calls():
    meta = lambda *s: torch.zeros(*s, device="meta")  # noqa: E731
    out = L.rtrl_step(meta(2, 3, 18), meta(3, 3), meta(2, 3), meta(2, 2), meta(2, 3), None, 0.5)
    assert out.shape == (2, 3, 18) and out.device.type == "meta"
    ran = L.eqprop_relax(meta(2, 3), [meta(4, 3)], [meta(4)], [meta(2, 4)], None, 0.0, 0, 0, 1, False, 0.0)
    assert ran.shape == (2,) and ran.dtype == torch.int64


# F12 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: ops.dfa_project(torch.zeros(2, 3), torch.zeros(3, 4), [torch.zeros(2, 4)], [2.7]), TypeError,
         r"kinds\[0\] must be an int"),
        (lambda: ops.sign_feedback(torch.zeros(3), seed="3"), TypeError, "seed must be an int"),
        (lambda: ops.sign_feedback(torch.zeros(3), counter=1.0), TypeError, "counter must be an int"),
        (lambda: ops.eqprop_relax(torch.zeros(2, 3), [torch.zeros(4, 3)], [torch.zeros(4)], [torch.zeros(2, 4)],
                                  steps=2.5), TypeError, "steps must be an int"),
        (lambda: ops.eqprop_relax(torch.zeros(2, 3), [torch.zeros(4, 3)], [torch.zeros(4)], [torch.zeros(2, 4)],
                                  beta="1"), TypeError, "beta must be a real number"),
        (lambda: ops.rtrl_step(*[torch.zeros(1)] * 6, alpha=NAN), ValueError, "alpha must not be NaN"),
    ],
)  # fmt: skip
def test_f12_wrappers_refuse_coercible_scalars(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("sizes,match", [([4, 2.5, 3], r"sizes\[1\] must be an int"), ([4, "5"], r"sizes\[1\]")])
def test_f12_eqprop_mlp_sizes(sizes, match):
    from localgrad.eqprop import EqPropMLP

    with pytest.raises(TypeError, match=match):
        EqPropMLP(sizes)


# F13 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [-1, 0, 2.5])
def test_f13_batches_refuses_a_non_positive_batch_size(batch_size):
    from localgrad import data

    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        list(data.batches(torch.zeros(4, 2), torch.zeros(4), batch_size))


@pytest.mark.parametrize(
    "argv,option",
    [(["--batch-size", "-5"], "--batch-size"), (["--epochs", "0"], "--epochs"), (["--lr", "nan"], "--lr"),
     (["--seed", "x"], "--seed"), (["--device", "gpu"], "--device"), (["--hidden", "0"], "--hidden"),
     (["--rules", "nope"], "--rules"), (["--mode", "online", "--alpha", "2"], "--alpha")],
)  # fmt: skip
def test_f13_cli_values_end_in_argparse_errors(argv, option, capsys):
    from localgrad import cli

    with pytest.raises(SystemExit) as info:
        cli.main(["demo", *argv])
    assert info.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err


# F14 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ["LIF", "ALIF"])
@pytest.mark.parametrize("key,value", [("tau_m", -20.0), ("tau_m", 0.0), ("dt", NAN), ("tau_out", -1.0)])
def test_f14_lif_time_constants(cls, key, value):
    from localgrad.online import lif

    with pytest.raises(ValueError, match=f"{cls}: {key} must"):
        getattr(lif, cls)(2, 3, 2, **{key: value})


# F15 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_f15_inputs_requiring_grad_are_read_outputs_requiring_grad_refused(device):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 4, generator=g, dtype=torch.float64).to(device).requires_grad_()
    w = [(torch.randn(5, 4, generator=g, dtype=torch.float64) * 0.3).to(device).requires_grad_()]
    b = [torch.zeros(5, dtype=torch.float64, device=device).requires_grad_()]
    states = [torch.zeros(3, 5, dtype=torch.float64, device=device)]
    ran = ops.eqprop_relax(x, w, b, states, steps=4)
    exp_states, exp_ran = reference.eqprop_relax(x.detach().cpu(), [w[0].detach().cpu()], [b[0].detach().cpu()],
                                                 [torch.zeros(3, 5, dtype=torch.float64)], steps=4)  # fmt: skip
    _close_nan(states[0], exp_states[0])
    assert ran.cpu().tolist() == exp_ran.tolist()
    a = [states[0].clone().requires_grad_()]
    gw, gb = ops.eqprop_update(x, a, [torch.zeros_like(states[0])], 0.5)
    ew, eb = reference.eqprop_update(x.detach().cpu(), [a[0].detach().cpu()], [torch.zeros(3, 5, dtype=torch.float64)],
                                     0.5)  # fmt: skip
    _close_nan(gw[0], ew[0])
    _close_nan(gb[0], eb[0])
    with pytest.raises(ValueError, match=r"states\[0\] requires grad.*states\[0\]\.detach\(\)"):
        ops.eqprop_relax(x, w, b, [torch.zeros(3, 5, dtype=torch.float64, device=device).requires_grad_()])
    with pytest.raises(ValueError, match=r"weight_grads\[0\] requires grad.*\.detach\(\)"):
        ops.eqprop_update(x, a, a, 0.5, [torch.zeros(5, 4, dtype=torch.float64, device=device).requires_grad_()],
                          [torch.zeros(5, dtype=torch.float64, device=device)])  # fmt: skip


# S1 -----------------------------------------------------------------------------------------


def _non_cpu(device):
    if torch.device(device).type == "cpu":
        pytest.skip("needs a second device type")


@pytest.mark.parametrize("device", DEVICES)
def test_s1_a_cpu_argument_among_device_tensors_gets_the_named_argument_message(device):
    _non_cpu(device)
    cpu_x = torch.rand(3, 4)
    w = [torch.randn(5, 4, device=device)]
    b = [torch.zeros(5, device=device)]
    for call, name in [
        (lambda: L.eqprop_relax(cpu_x, w, b, [torch.zeros(3, 5, device=device)], None, 0.0, 0, 0, 2, False, 0.0),
         "weights[0] must be on the device of x"),
        (lambda: L.eqprop_update(cpu_x, [torch.zeros(3, 5, device=device)], [torch.zeros(3, 5, device=device)], 1.0,
                                 [torch.zeros(5, 4, device=device)], [torch.zeros(5, device=device)]),
         "states_a[0] must be on the device of x"),
    ]:  # fmt: skip
        with pytest.raises(RuntimeError) as info:
            call()
        assert name in str(info.value) and "CUDAGuardImpl" not in str(info.value)
    a = _eprop_args(device)
    a["x"] = a["x"].cpu()
    with pytest.raises(RuntimeError, match="weight_in must be on the device of x"):
        L.eprop_lif_chunk(*a.values())


# S3 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_s3_eprop_honours_deterministic_algorithms(device):
    was = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        a = _eprop_args(device)
        if torch.device(device).type == "cpu":  # fixed summation order: deterministic
            b = _eprop_args(device)
            L.eprop_lif_chunk(*a.values())
            L.eprop_lif_chunk(*b.values())
            assert torch.equal(a["grad_w"], b["grad_w"]) and torch.equal(a["grad_out"], b["grad_out"])
        else:
            with pytest.raises(RuntimeError, match="eprop_lif_chunk.*atomicAdd"):
                L.eprop_lif_chunk(*a.values())
            torch.use_deterministic_algorithms(True, warn_only=True)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                L.eprop_lif_chunk(*_eprop_args(device).values())
            assert any("atomicAdd" in str(w.message) for w in caught)
    finally:
        torch.use_deterministic_algorithms(was)


# S6 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_s6_eqprop_with_tf32_stays_within_the_documented_tolerance(device, monkeypatch):
    _non_cpu(device)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(64, 300, generator=g, dtype=torch.float64)
    w = [torch.randn(256, 300, generator=g, dtype=torch.float64) / 17, torch.randn(10, 256, generator=g, dtype=torch.float64) / 16]
    b = [torch.zeros(256, dtype=torch.float64), torch.zeros(10, dtype=torch.float64)]
    expected, _ = reference.eqprop_relax(x, w, b, [torch.zeros(64, 256, dtype=torch.float64),
                                                   torch.zeros(64, 10, dtype=torch.float64)], None, 0.0, 0, 1, 20)
    old = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        for path in ("persistent", "step"):
            monkeypatch.setenv("LOCALGRAD_EQPROP_PATH", path)
            states = [torch.zeros(64, 256, device=device), torch.zeros(64, 10, device=device)]
            try:
                L.eqprop_relax(x.float().to(device), [t.float().to(device) for t in w],
                               [t.float().to(device) for t in b], states, None, 0.0, 0, 1, 20, False, 0.0)  # fmt: skip
            except RuntimeError as exc:
                if "do not fit" in str(exc):
                    continue
                raise
            for s, e in zip(states, expected):
                err = (s.double().cpu() - e).abs().max().item() / e.abs().max().item()
                assert err < 5e-3, (path, err)  # README: TF32 gives ~1e-3 relative on float32 EqProp
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


_ = math, os


def _to(value, device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, list):
        return [_to(v, device) for v in value]
    return value


@pytest.mark.parametrize("op", ["dfa_project", "sign_feedback", "eqprop_relax", "eqprop_update", "rtrl_step",
                                "snap_step", "rflo_chunk", "uoro_step", "eprop_lif_chunk", "kfrtrl_step",
                                "plastic_episode", "plastic_episode_backward"])  # fmt: skip
@pytest.mark.parametrize("device", DEVICES)
def test_s1_every_op_names_the_argument_on_the_wrong_device(op, device):
    """Every tensor argument in turn left on the CPU while the others are on
    `device`: an error naming it (or the argument it is checked against)."""
    _non_cpu(device)
    from op_specs import SPECS

    spec = SPECS[op]
    args = {k: _to(v, device) for k, v in spec.make().items()}
    for name, value in args.items():
        items = value if isinstance(value, list) else [value]
        for i, t in enumerate(items):
            if not isinstance(t, torch.Tensor):
                continue
            bad = dict(args)
            if isinstance(value, list):
                bad[name] = list(value)
                bad[name][i] = t.cpu()
            else:
                bad[name] = t.cpu()
            with pytest.raises(RuntimeError) as info:
                spec.call_ops(bad)
            message = str(info.value)
            assert "must be on the device of" in message and "CUDAGuardImpl" not in message, (name, message)


# Issue 29: no silent wrong answer ---------------------------------------------------
# The Python side: scalars parsed by the strict helpers (a float for an int,
# NaN, a string are refused, not coerced), frozen parameters left alone,
# non-finite targets refused, checks before any write, and empty inputs with
# the shapes the non-empty ones have.


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [(dict(rule=True), TypeError, "rule must be an int"), (dict(rule=1.0), TypeError, "rule must be an int"),
     (dict(rank=2.5), TypeError, "rank must be an int"), (dict(temperature="1"), TypeError, "temperature must be a real"),
     (dict(temperature=NAN), ValueError, "temperature must not be NaN"),
     (dict(normalize=2), TypeError, "normalize must be a bool")],
)  # fmt: skip
def test_i29_hebbian_update_refuses_coercible_scalars(kwargs, exc, match):
    with pytest.raises(exc, match=f"hebbian_update: {match}"):
        ops.hebbian_update(torch.randn(3, 4), torch.randn(2, 4), **({"rule": "krotov"} | kwargs))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["grad", "u"])
def test_i29_hebbian_update_refuses_an_output_that_requires_grad(device, name):
    x, w = torch.randn(3, 4, device=device), torch.randn(2, 4, device=device)
    out = torch.zeros((2, 4) if name == "grad" else (3, 2), device=device, requires_grad=True)
    with pytest.raises(ValueError, match=rf"hebbian_update: {name} requires grad.*{name}\.detach\(\)"):
        ops.hebbian_update(x, w, "oja", **{name: out})
    assert (out == 0).all()
    u, grad = ops.hebbian_update(x, w, "oja", **{name: out.detach()})
    assert not grad.requires_grad and not u.requires_grad


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [(dict(rank=2.5), TypeError, "rank must be an int"), (dict(rank=0), ValueError, "rank must be >= 1"),
     (dict(theta_rate=NAN), ValueError, "theta_rate must not be NaN"),
     (dict(theta_rate=1.5), ValueError, r"theta_rate must be in \[0, 1\]"),
     (dict(theta_rate=-0.1), ValueError, "theta_rate must be >= 0"),
     (dict(theta_rate=INF), ValueError, "theta_rate must be finite"),
     (dict(rule="bcm", power=NAN), ValueError, "power must not be NaN"),
     (dict(lr="0.1"), TypeError, "lr must be a real"), (dict(normalize_input=2), TypeError, "normalize_input must be a bool"),
     (dict(rule=1), TypeError, "rule must be a rule name")],
)  # fmt: skip
def test_i29_hebbian_layers_refuse_coercible_knobs(kwargs, exc, match):
    from localgrad import hebbian

    kwargs = {"rule": "bcm"} | kwargs
    with pytest.raises(exc, match=f"HebbianLinear: {match}"):
        hebbian.HebbianLinear(4, 3, **kwargs)
    with pytest.raises(exc, match=f"HebbianConv2d: {match}"):
        hebbian.HebbianConv2d(2, 3, 3, **kwargs)


def test_i29_hebbian_conv_checks_channels_before_writing_grad():
    from localgrad import hebbian

    # 4 channels where 2 are expected: unfold's patches still reshape into
    # rows of 2 x 3 x 3, so the rule ran on them before the old error.
    conv = hebbian.HebbianConv2d(2, 3, 3, "oja")
    with pytest.raises(ValueError, match=r"HebbianConv2d: x must be \(batch, 2, height, width\)"):
        conv(torch.randn(2, 4, 5, 5))
    assert conv.weight.grad is None


def test_i29_hebbian_features_of_an_empty_input_have_the_feature_width():
    from localgrad import hebbian

    dense = nn.Sequential(hebbian.HebbianLinear(4, 3, "oja"))
    assert hebbian.features(dense, torch.zeros(0, 4)).shape == (0, 3)
    conv = nn.Sequential(hebbian.HebbianConv2d(2, 3, 3, "softhebb"), nn.Flatten())
    assert hebbian.features(conv, torch.zeros(0, 2, 5, 5)).shape == (0, 27)


@pytest.mark.parametrize("kwargs,exc,match", [(dict(epochs=-1), ValueError, "epochs must be >= 0"),
                                              (dict(epochs=1.5), TypeError, "epochs must be an int"),
                                              (dict(batch_size=0), ValueError, "batch_size must be >= 1")])
def test_i29_hebbian_learn_refuses_bad_epochs_and_batch_size(kwargs, exc, match):
    from localgrad import hebbian

    net = nn.Sequential(hebbian.HebbianLinear(4, 3, "oja"))
    before = net[0].weight.detach().clone()
    with pytest.raises(exc, match=f"hebbian.learn: {match}"):
        hebbian.learn(net, torch.randn(8, 4), **kwargs)
    assert torch.equal(net[0].weight, before)


def _pc_args():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, generator=g, dtype=torch.float64)
    weights = [torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(2, 5, generator=g, dtype=torch.float64)]
    biases = [torch.zeros(5, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)]
    return x, weights, biases, [torch.zeros(3, 5, dtype=torch.float64)], torch.zeros(3, 2, dtype=torch.float64)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [(dict(variant=1.0), TypeError, "variant must be an int"), (dict(loss=True), TypeError, "loss must be an int"),
     (dict(steps=2.5), TypeError, "steps must be an int"), (dict(steps=-1), ValueError, "steps must be >= 0"),
     (dict(gamma="0.1"), TypeError, "gamma must be a real"), (dict(gamma=NAN), ValueError, "gamma must not be NaN"),
     (dict(lr=INF), ValueError, "lr must be finite"), (dict(kinds=[0, 1.5]), TypeError, r"kinds\[1\] must be an int"),
     (dict(slopes=[0.0, "0"]), TypeError, r"slopes\[1\] must be a real")],
)  # fmt: skip
def test_i29_predictive_coding_infer_refuses_coercible_scalars(kwargs, exc, match):
    x, weights, biases, states, target = _pc_args()
    kinds = kwargs.pop("kinds", [0, 3])
    slopes = kwargs.pop("slopes", None)
    with pytest.raises(exc, match=f"predictive_coding_infer: {match}"):
        ops.predictive_coding_infer(x, weights, biases, states, target, kinds, slopes, **kwargs)


@pytest.mark.parametrize("kinds,slopes,scale,exc,match",
                         [([0, 3.0], None, 1.0, TypeError, r"kinds\[1\] must be an int"),
                          ([0, 3], [0.0, NAN], 1.0, ValueError, r"slopes\[1\] must not be NaN"),
                          ([0, 3], None, "1", TypeError, "scale must be a real")])
def test_i29_predictive_coding_update_refuses_coercible_scalars(kinds, slopes, scale, exc, match):
    x, _, _, states, _ = _pc_args()
    errors = [torch.zeros(3, 5, dtype=torch.float64), torch.zeros(3, 2, dtype=torch.float64)]
    with pytest.raises(exc, match=f"predictive_coding_update: {match}"):
        ops.predictive_coding_update(x, states, errors, kinds, slopes, scale)


@pytest.mark.parametrize("kwargs,exc,match", [(dict(steps=2.5), TypeError, "steps must be an int"),
                                              (dict(steps=True), TypeError, "steps must be an int"),
                                              (dict(gamma="0.1"), TypeError, "gamma must be a real"),
                                              (dict(gamma=NAN), ValueError, "gamma must not be NaN"),
                                              (dict(ipc_lr=NAN), ValueError, "ipc_lr must not be NaN")])
def test_i29_predictive_coding_learner_refuses_coercible_scalars(kwargs, exc, match):
    from localgrad.predictive_coding import PredictiveCoding

    with pytest.raises(exc, match=f"PredictiveCoding: {match}"):
        PredictiveCoding(nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2)), **kwargs)


@pytest.mark.parametrize("eta,exc,match", [("0.1", TypeError, "eta must be a real"),
                                           (True, TypeError, "eta must be a real"),
                                           (NAN, ValueError, "eta must not be NaN")])
def test_i29_plastic_layer_refuses_a_coercible_eta(eta, exc, match):
    from localgrad.meta.plastic import PlasticLayer

    with pytest.raises(exc, match=f"PlasticLayer: {match}"):
        PlasticLayer(3, 2, eta=eta)


def _frozen_case(kind):
    torch.manual_seed(0)
    if kind == "mlp":
        model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 3))
        return model, torch.randn(6, 4)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.Tanh(), nn.Flatten(), nn.Linear(18, 3))
    return model, torch.randn(6, 1, 7, 7)


def _learners():
    from localgrad.predictive_coding import PredictiveCoding
    from localgrad.target_prop import TargetProp

    kinds = ("mlp", "conv")
    cases = [(lambda m, v=v: PredictiveCoding(m, variant=v), kind) for v in ("il", "fpa", "zil") for kind in kinds]
    cases.append((lambda m: PredictiveCoding(m, variant="ipc"), "conv"))
    cases += [(lambda m, v=v: TargetProp(m, variant=v, seed=1), kind) for v in ("tp", "dtp", "ldrl") for kind in kinds]
    cases += [(lambda m: TargetProp(m, variant="ddtp", seed=1), "mlp"),
              (lambda m: TargetProp(m, variant="dtp", seed=1, feedback="gated"), "mlp")]
    return cases


_IPC_CASE = 6


@pytest.mark.parametrize("case", range(len(_learners())))
def test_i29_frozen_parameters_get_no_grad_and_change_nothing_else(case):
    make, kind = _learners()[case]
    y = torch.randint(0, 3, (6,))
    model, x = _frozen_case(kind)
    make(model).step(x, y)
    frozen, x = _frozen_case(kind)
    frozen[0].weight.requires_grad_(False)
    frozen[-1].bias.requires_grad_(False)
    learner = make(frozen)
    feedback = getattr(learner, "feedback_parameters", list)()
    if feedback:
        feedback[0].requires_grad_(False)
    learner.step(x, y)  # the conv paths raised here: autograd refused the frozen weight
    assert frozen[0].weight.grad is None and frozen[-1].bias.grad is None
    if feedback:
        assert feedback[0].grad is None and all(p.grad is not None for p in feedback[1:])
    if case == _IPC_CASE:  # iPC holds the frozen weight fixed where it moved the others in inference
        return
    # Frozen or not, a parameter's values are read the same: the others' updates do not change.
    for p, q in zip(model.parameters(), frozen.parameters()):
        if q.requires_grad:
            torch.testing.assert_close(q.grad, p.grad, rtol=0, atol=0)


def test_i29_predictive_coding_ipc_on_an_mlp_refuses_frozen_parameters():
    from localgrad.predictive_coding import PredictiveCoding

    model, x = _frozen_case("mlp")
    model[0].weight.requires_grad_(False)
    with pytest.raises(ValueError, match="variant 'ipc' on an MLP.*frozen parameters"):
        PredictiveCoding(model, variant="ipc").step(x, torch.randint(0, 3, (6,)))
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("learner", ["PredictiveCoding", "TargetProp"])
@pytest.mark.parametrize("value", [NAN, INF])
def test_i29_non_finite_float_targets_are_refused_naming_y(learner, value):
    from localgrad.predictive_coding import PredictiveCoding
    from localgrad.target_prop import TargetProp

    model, x = _frozen_case("mlp")
    y = torch.zeros(6, 3)
    y[2, 1] = value
    with pytest.raises(ValueError, match=f"{learner}: float targets y contain NaN or inf"):
        {"PredictiveCoding": PredictiveCoding, "TargetProp": TargetProp}[learner](model).step(x, y)
    assert all(p.grad is None for p in model.parameters())


_ONLINE = ["RTRL", "SnAp", "RFLO", "UORO", "KFRTRL", "EProp", "BPTT"]


@pytest.mark.parametrize("rule", _ONLINE)
@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_i29_online_learners_empty_batch_has_loss_zero(rule, loss):
    from localgrad import online

    model = online.LeakyRNN(3, 4, 2)
    learner = getattr(online, rule)(model, loss=loss)
    learner.reset(0)
    targets = torch.zeros(5, 0, 2) if loss == "mse" else torch.zeros(5, 0, dtype=torch.long)
    assert learner.run(torch.zeros(5, 0, 3), targets).item() == 0.0  # the mean over no samples was NaN
    assert all(p.grad is not None and not p.grad.isnan().any() for p in model.parameters())


@pytest.mark.parametrize("rule", _ONLINE)
def test_i29_online_learners_refuse_integer_targets_for_mse(rule):
    from localgrad import online

    model = online.LeakyRNN(3, 4, 2)
    learner = getattr(online, rule)(model)
    learner.reset(2)
    with pytest.raises(TypeError, match=f"{rule}: targets must be floating for loss 'mse'"):
        learner.run(torch.zeros(5, 2, 3), torch.ones(5, 2, 2, dtype=torch.long))
    assert all(p.grad is None for p in model.parameters())


def test_i29_evolution_strategies_refuses_integer_parameters():
    from localgrad.meta.evolution import EvolutionStrategies

    # The noise cast to int64 is 0: every member was theta, the estimate zeros.
    with pytest.raises(TypeError, match=r"EvolutionStrategies: params\[1\] must be floating, got torch.int64"):
        EvolutionStrategies([torch.ones(2), torch.ones(3, dtype=torch.int64)], sigma=0.1, population=4)


@pytest.mark.parametrize("dtype,sigma", [(torch.float32, 1e-40), (torch.float32, 1e-300), (torch.float16, 1e-5),
                                         (torch.float64, 1e-310)])
def test_i29_evolution_strategies_refuses_a_subnormal_sigma(dtype, sigma):
    from localgrad.meta.evolution import EvolutionStrategies

    with pytest.raises(ValueError, match=f"EvolutionStrategies: sigma = .* below the smallest normal {dtype}"):
        EvolutionStrategies([torch.ones(3, dtype=torch.float64), torch.ones(3, dtype=dtype)], sigma=sigma,
                            population=4)
    # The smallest normal sigma itself gives a finite estimate.
    es = EvolutionStrategies([torch.ones(3, dtype=dtype)], sigma=torch.finfo(dtype).tiny, population=4)
    grads, _ = es.estimate(lambda q: (q.double() ** 2).sum(1))
    assert grads[0].isfinite().all()


# Issue 29, the C++ side: every op's outputs go through checks.h's overlap
# checks (rows overlapping each other, and views ATen calls "too hard":
# column blocks and transposes of one buffer), a meta tensor among real ones
# is refused, and a NaN value node stays NaN through the ReLU.


@pytest.mark.parametrize("device", DEVICES)
def test_i29_hebbian_refuses_outputs_whose_rows_overlap(device):
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(3, 4, generator=g).to(device), torch.randn(2, 4, generator=g).to(device)
    u = torch.zeros(8, device=device).as_strided((3, 2), (1, 1))  # row r starts where row r-1 ends - 1
    with pytest.raises(ValueError, match="hebbian_update: u is written in place but some of its elements share"):
        ops.hebbian_update(x, w, "oja", u=u)
    grad = torch.zeros(8, device=device).as_strided((2, 4), (2, 1))
    with pytest.raises(ValueError, match="hebbian_update: grad is written in place but some of its elements share"):
        ops.hebbian_update(x, w, "oja", grad=grad)
    # column blocks of one buffer: refused where they meet, used where they do not
    buf = torch.zeros(3, 7, device=device)
    buf[:, :4] = x
    with pytest.raises(ValueError, match=r"hebbian_update: u \(written\) shares memory with x"):
        ops.hebbian_update(buf[:, :4], w, "oja", u=buf[:, 3:5])
    u, grad = ops.hebbian_update(buf[:, :4], w, "oja", u=buf[:, 4:6])
    ru, rg = reference.hebbian.hebbian_update(x.cpu(), w.cpu(), "oja")
    _close_nan(u, ru, 1e-5)
    _close_nan(grad, rg, 1e-5)


def _pc_net(device, batch=4, widths=(4, 5, 3)):
    g = torch.Generator().manual_seed(1)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(device)  # noqa: E731
    weights = [r(widths[i + 1], widths[i]) for i in range(len(widths) - 1)]
    biases = [r(widths[i + 1]) for i in range(len(widths) - 1)]
    states = [r(batch, n) for n in widths[1:-1]]
    return r(batch, widths[0]), weights, biases, states, r(batch, widths[-1])


@pytest.mark.parametrize("device", DEVICES)
def test_i29_predictive_coding_infer_refuses_overlapping_outputs(device):
    x, weights, biases, states, target = _pc_net(device)
    kinds, slopes = [1, 2], [0.0, 0.0]
    run = lambda **kw: ops.predictive_coding_infer(  # noqa: E731
        kw.pop("x", x), weights, biases, kw.pop("states", states), target, kinds, slopes, steps=2, **kw)
    rows = torch.zeros(32, dtype=torch.float64, device=device).as_strided((4, 5), (4, 1))
    with pytest.raises(ValueError, match=r"predictive_coding_infer: states\[0\] is written in place but some"):
        run(states=[rows])
    with pytest.raises(ValueError, match=r"predictive_coding_infer: errors\[0\] is written in place but some"):
        run(errors=[rows, torch.zeros(4, 3, dtype=torch.float64, device=device)])
    # a state and x as column blocks of one buffer that meet in one column
    buf = torch.zeros(4, 8, dtype=torch.float64, device=device)
    buf[:, :4] = x
    with pytest.raises(ValueError, match=r"predictive_coding_infer: states\[0\] \(written\) shares memory with x"):
        run(x=buf[:, :4], states=[buf[:, 3:8]])
    errors = torch.zeros(4, 9, dtype=torch.float64, device=device)
    with pytest.raises(ValueError, match=r"predictive_coding_infer: errors\[0\] \(written\) shares memory with errors\[1\]"):
        run(errors=[errors[:, :5], errors[:, 4:7]])
    # apart, in one buffer each: the reference's result
    want_states, want_errors, _, _ = reference.predictive_coding_infer(
        x.cpu(), [w.cpu() for w in weights], [b.cpu() for b in biases], [s.cpu() for s in states], target.cpu(),
        kinds, slopes, steps=2)  # fmt: skip
    buf = torch.zeros(4, 9, dtype=torch.float64, device=device)
    buf[:, :4], buf[:, 4:] = x, states[0]
    got = run(x=buf[:, :4], states=[buf[:, 4:]], errors=[errors[:, :5], errors[:, 5:8]])
    _close_nan(buf[:, 4:], want_states[0])
    for e, want in zip(got, want_errors):
        _close_nan(e, want)


def test_i29_predictive_coding_update_refuses_an_output_transposing_an_input():
    x, _, _, states, _ = _pc_net("cpu")
    held = torch.randn(5, 8, dtype=torch.float64)
    errors = [held[:4, :5], held[:4, 5:]]
    gb = [torch.zeros(5, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)]
    gw = [torch.zeros(5, 4, dtype=torch.float64), torch.zeros(3, 5, dtype=torch.float64)]
    for written in ([errors[0].T, gw[1]], [gw[0], held[:, 5:].T]):
        with pytest.raises(ValueError, match=r"predictive_coding_update: weight_grads\[[01]\] \(written\) shares "
                                             r"memory with errors\[[01]\]"):  # fmt: skip
            L.predictive_coding_update(x, states, errors, [1, 2], [0.0, 0.0], 1.0, written, gb)


@pytest.mark.parametrize("device", DEVICES)
def test_i29_dfa_refuses_out_blocks_aliasing_error_columns(device):
    g = torch.Generator().manual_seed(0)
    e = torch.randn(4, 7, generator=g).to(device)
    fb = torch.randn(7, 7, generator=g).to(device)
    with pytest.raises(ValueError, match=r"dfa_project: out\[0\] \(written\) shares memory with error"):
        L.dfa_project(e, fb, [None, None], [1, 1], [0.0, 0.0], list(e.split([5, 2], 1)))
    # error and out as disjoint column blocks of one buffer: the reference's result
    buf = torch.zeros(4, 14, device=device)
    buf[:, 7:] = e
    L.dfa_project(buf[:, 7:], fb, [None, None], [1, 1], [0.0, 0.0], list(buf[:, :7].split([5, 2], 1)))
    want = reference.dfa_project(e.cpu(), fb.cpu(), [None, None], [1, 1], [0.0, 0.0], [5, 2])
    _close_nan(buf[:, :7], torch.cat(want, 1), 1e-5)


def test_i29_predictive_coding_refuses_a_meta_tensor_among_cpu_tensors():
    x, weights, biases, states, target = _pc_net("cpu")
    before = states[0].clone()
    with pytest.raises(RuntimeError, match="meta"):
        L.predictive_coding_infer(x, [weights[0].to("meta"), weights[1]], biases, states,
                                  [torch.zeros(4, 5, dtype=torch.float64), torch.zeros(4, 3, dtype=torch.float64)],
                                  target, [1, 2], [0.0, 0.0], 0, 0, 1.0, 2, 0.1, 0.0)  # fmt: skip
    assert torch.equal(states[0], before)
    gw = [torch.full((5, 4), 7.0, dtype=torch.float64), torch.full((3, 5), 7.0, dtype=torch.float64)]
    gb = [torch.full((5,), 7.0, dtype=torch.float64), torch.full((3,), 7.0, dtype=torch.float64)]
    errors = [torch.zeros(4, 5, dtype=torch.float64), torch.zeros(4, 3, dtype=torch.float64, device="meta")]
    with pytest.raises(RuntimeError, match="meta"):
        L.predictive_coding_update(x, states, errors, [1, 2], [0.0, 0.0], 1.0, gw, gb)
    assert all((t == 7).all() for t in gw + gb)


@pytest.mark.parametrize("device", DEVICES)
def test_i29_predictive_coding_relu_keeps_a_nan_state_nan(device):
    x, weights, biases, states, target = _pc_net(device)
    states[0][1, 2] = NAN
    kinds, slopes = [1, 2], [0.0, 0.0]
    want_states, want_errors, _, _ = reference.predictive_coding_infer(
        x.cpu(), [w.cpu() for w in weights], [b.cpu() for b in biases], [s.cpu() for s in states], target.cpu(),
        kinds, slopes, steps=3)  # fmt: skip
    assert want_errors[1][1].isnan().all()  # the NaN reaches the output through the ReLU
    errors = ops.predictive_coding_infer(x, weights, biases, states, target, kinds, slopes, steps=3)
    _close_nan(states[0], want_states[0])
    for e, want in zip(errors, want_errors):
        _close_nan(e, want)


def test_i29_overlap_check_never_misses_and_is_exact_for_one_pitch():
    # hebbian_update's x (read) and u (written) as random row-major or
    # transposed views of one buffer, against the sets of elements they touch:
    # every overlap is refused; with one row pitch the check is exact, with
    # two it may refuse views that are in fact apart.
    g = torch.Generator().manual_seed(0)
    pick = lambda lo, hi: int(torch.randint(lo, hi + 1, (), generator=g))  # noqa: E731

    def view(buf, rows, cols, transposed):
        inner, outer = (rows, cols) if transposed else (cols, rows)
        pitch = pick(inner, inner + 3)
        offset = pick(0, buf.numel() - ((outer - 1) * pitch + inner))
        return buf.as_strided((rows, cols), (1, pitch) if transposed else (pitch, 1), offset)

    def cells(t):
        return {t.storage_offset() + i * t.stride(0) + j * t.stride(1) for i in range(t.shape[0])
                for j in range(t.shape[1])}  # fmt: skip

    for _ in range(600):
        buf = torch.zeros(60)
        batch, n_in, n_out = pick(1, 5), pick(1, 5), pick(1, 5)
        x = view(buf, batch, n_in, pick(0, 1) == 1)
        u = view(buf, batch, n_out, False)
        shared = bool(cells(x) & cells(u))
        try:
            L.hebbian_update(x, torch.randn(n_out, n_in), None, 0, 1.0, 3.0, 2, 0.4, 1.0, 0.0, False, u,
                             torch.empty(n_out, n_in))  # fmt: skip
            refused = False
        except ValueError as e:
            assert "u (written) shares memory with x" in str(e)
            refused = True
        one_pitch = batch == 1 or x.stride(0) == u.stride(0)
        assert refused == shared if one_pitch else refused or not shared
