"""Every op under torch.compile with the Inductor backend (fullgraph), next to
a little pointwise arithmetic for Inductor to generate code around it: the
compiled function must give what the eager one gives, outputs written in place
included. The other op tests compile with aot_eager, which stops short of
Inductor's lowering and its re-inplacing of the mutating ops; and the pystub
that set_python_module (csrc/registration.cpp) records for each op."""

import importlib

import pytest
import torch
from testing import rel_err

import localgrad
from localgrad import Activation

pytestmark = pytest.mark.skipif(not localgrad.has_extension(), reason="the compiled extension is not built")

OPS = {  # op -> the module its fake kernel is registered from
    "dfa_project": "localgrad.ops.dfa",
    "sign_feedback": "localgrad.ops.sign_feedback",
    "eqprop_relax": "localgrad.ops.eqprop",
    "eqprop_update": "localgrad.ops.eqprop",
    "rtrl_step": "localgrad.ops.rtrl",
    "snap_step": "localgrad.ops.snap",
    "rflo_chunk": "localgrad.ops.rflo",
    "uoro_step": "localgrad.ops.uoro",
    "eprop_lif_chunk": "localgrad.ops.eprop_lif",
}

lg = torch.ops.localgrad


def rand(g, *shape):
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def online_inputs(g, batch=3, hidden=5, inputs=4):
    mask = (torch.rand(hidden, hidden, generator=g) < 0.6).double()
    return dict(weight_hh=rand(g, hidden, hidden) * mask, h_prev=rand(g, batch, hidden), x=rand(g, batch, inputs),
                dphi=rand(g, batch, hidden).abs(), hh_mask=mask)


# Each case: (function calling the op, its arguments). The function returns
# what the op returned or wrote, passed through some arithmetic.


def case_dfa_project(g):
    def fn(error, feedback, h0, h1, out0, out1):
        lg.dfa_project(error, feedback, [h0, h1], [int(Activation.RELU), int(Activation.TANH)], [0.0, 0.0],
                       [out0, out1])
        return out0 * 2 + 1, out1.sum(dim=0)

    h0, h1 = rand(g, 4, 5).relu(), rand(g, 4, 3).tanh()
    return fn, (rand(g, 4, 3), rand(g, 3, 8), h0, h1, torch.empty(4, 5, dtype=torch.float64),
                torch.empty(4, 3, dtype=torch.float64))


def case_sign_feedback(g):
    def fn(weight, out):
        lg.sign_feedback(weight, 3, 4, 0.5, True, out)
        return out * weight, out.abs().sum()

    return fn, (rand(g, 7, 3), torch.empty(7, 3, dtype=torch.float64))


def eqprop_net(g, batch=4, sizes=(5, 6, 3)):
    weights = [rand(g, b, a) / a**0.5 for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [rand(g, b) * 0.5 for b in sizes[1:]]
    x = torch.rand(batch, sizes[0], generator=g, dtype=torch.float64)
    states = [torch.rand(batch, n, generator=g, dtype=torch.float64) for n in sizes[1:]]
    target = torch.nn.functional.one_hot(torch.randint(0, sizes[-1], (batch,), generator=g), sizes[-1]).double()
    return x, weights, biases, states, target


def case_eqprop_relax(g):
    def fn(x, w0, w1, b0, b1, s0, s1, target):
        steps = lg.eqprop_relax(x, [w0, w1], [b0, b1], [s0, s1], target, 0.5, 1, 0, 6, False, 0.0)
        return s0 + 1, s1 * 3, steps + 1

    x, weights, biases, states, target = eqprop_net(g)
    return fn, (x, *weights, *biases, *states, target)


def case_eqprop_update(g):
    def fn(x, a0, a1, b0, b1, gw0, gw1, gb0, gb1):
        lg.eqprop_update(x, [a0, a1], [b0, b1], 2.0, [gw0, gw1], [gb0, gb1])
        return gw0 * 2, gw1 - 1, gb0 + gb1.sum()

    x, weights, biases, states, _ = eqprop_net(g)
    nudged = [s * 0.5 + 0.1 for s in states]
    grads = [torch.empty_like(w) for w in weights] + [torch.empty_like(b) for b in biases]
    return fn, (x, *states, *nudged, *grads)


def case_rtrl_step(g):
    def fn(influence, weight_hh, h_prev, x, dphi, hh_mask):
        return (lg.rtrl_step(influence, weight_hh, h_prev, x, dphi, hh_mask, 0.7) * 2,)

    kw = online_inputs(g)
    return fn, (rand(g, 3, 5, 5 * 10), *kw.values())


def case_snap_step(g):
    from localgrad.online import LeakyRNN, SnAp

    kw = online_inputs(g)
    snap = SnAp(LeakyRNN(4, 5, 1, recurrent_mask=kw["hh_mask"].bool()), 2)
    lists = (snap.entry_unit, snap.entry_row, snap.nbr_ptr, snap.nbr_entry, snap.nbr_weight)

    def fn(influence, weight_hh, h_prev, x, dphi, hh_mask, *lists):
        return (lg.snap_step(influence, weight_hh, h_prev, x, dphi, hh_mask, 0.7, *lists) + 1,)

    return fn, (rand(g, 3, lists[0].numel(), 10), *kw.values(), *lists)


def case_rflo_chunk(g):
    def fn(trace, xs, h_prevs, dphis, signals, hh_mask):
        trace, grad = lg.rflo_chunk(trace, xs, h_prevs, dphis, signals, hh_mask, 0.7)
        return trace * 2, grad - 1

    kw = online_inputs(g)
    return fn, (rand(g, 3, 5, 10), rand(g, 2, 3, 4), rand(g, 2, 3, 5), rand(g, 2, 3, 5).abs(), rand(g, 2, 3, 5),
                kw["hh_mask"])


def case_uoro_step(g):
    def fn(s_tilde, theta_tilde, weight_hh, nu, h_prev, x, dphi, hh_mask):
        s, theta = lg.uoro_step(s_tilde, theta_tilde, weight_hh, nu, h_prev, x, dphi, hh_mask, 0.7, 1e-7)
        return s * 2, theta.sum(dim=0)

    kw = online_inputs(g)
    return fn, (rand(g, 3, 5), rand(g, 3, 5, 10), kw["weight_hh"], rand(g, 3, 5).sign(), kw["h_prev"], kw["x"],
                kw["dphi"], kw["hh_mask"])


def case_eprop_lif_chunk(g):
    T, B, I, H, K = 3, 2, 3, 4, 2
    neuron = [0.9, 0.95, 0.7, 1.0, 0.3, 0.8]

    def fn(x, w_in, w_rec, w_out, b_out, feedback, target, v, a, z, psi, y, pre, adapt, filt, out_trace, grad_w,
           grad_out, outputs):
        lg.eprop_lif_chunk(x, w_in, w_rec, w_out, b_out, feedback, target, None, neuron, True, 0, 0.1,
                           v, a, z, psi, y, pre, adapt, filt, out_trace, grad_w, grad_out, outputs)
        return outputs * 2, grad_w + 1, v.sum()

    w_rec = rand(g, H, H) / H**0.5
    w_rec.diagonal().zero_()
    inputs = (rand(g, T, B, I), rand(g, H, I), w_rec, rand(g, K, H), rand(g, K), rand(g, K, H), rand(g, T, B, K))
    state = (rand(g, B, H) * 0.5, rand(g, B, H).abs(), (rand(g, B, H) > 0.5).double(), rand(g, B, H).abs() * 0.3,
             rand(g, B, K), rand(g, B, I + H).abs(), rand(g, B, H, I + H), rand(g, B, H, I + H),
             rand(g, B, H + 1).abs())
    grads = (rand(g, H, I + H), rand(g, K, H + 1))
    return fn, (*inputs, *state, *grads, torch.empty(T, B, K, dtype=torch.float64))


def case_kfrtrl_step(g):
    def fn(u, A, weight_hh, signs, h_prev, x, dphi):
        u_new, a_new = lg.kfrtrl_step(u, A, weight_hh, signs, h_prev, x, dphi, 0.7, 1e-7)
        return u_new * 2, a_new.sum(dim=0)

    kw = online_inputs(g)
    signs = (torch.rand(3, 2, generator=g) < 0.5).double() * 2 - 1
    return fn, (rand(g, 3, 1, 10), rand(g, 3, 1, 5, 5), kw["weight_hh"], signs, kw["h_prev"], kw["x"], kw["dphi"])


OPS["kfrtrl_step"] = "localgrad.ops.kfrtrl"

CASES = {name: globals()[f"case_{name}"] for name in OPS}


def clone_all(args):
    return tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)


@pytest.mark.parametrize("op", list(OPS))
def test_inductor_fullgraph_matches_eager(op):
    fn, args = CASES[op](torch.Generator().manual_seed(0))
    eager_args, compiled_args = clone_all(args), clone_all(args)
    expected = fn(*eager_args)
    torch._dynamo.reset()
    got = torch.compile(fn, backend="inductor", fullgraph=True)(*compiled_args)
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype and g.shape == e.shape
        assert rel_err(g, e) <= 1e-12, op
    # What the op wrote in place (states, traces, gradients, outputs), as well.
    for g, e in zip(compiled_args, eager_args):
        if isinstance(g, torch.Tensor) and g.is_floating_point():
            assert rel_err(g, e) <= 1e-12, op


@pytest.mark.parametrize("op", list(OPS))
def test_each_op_names_the_module_of_its_fake_kernel(op):
    assert torch._C._dispatch_pystub(f"localgrad::{op}", "") == (OPS[op], "")
    module = importlib.import_module(OPS[op])
    assert module.__name__ == OPS[op]
