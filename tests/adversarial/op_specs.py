"""The adversarial suite's model of every op: a valid call, how to run it at
both levels (torch.ops.localgrad.* and localgrad.ops.*), which arguments it
writes, and its reference result. tests/adversarial/cases.py mutates these
calls; nothing here knows what a mutation is."""

from __future__ import annotations

import torch

from localgrad import ops, reference
from localgrad.reference import eprop_lif as ref_eprop
from localgrad.reference import online_rnn as ref_rnn


class OpSpec:
    """name: the op; make(dtype, batch): dict of arguments in schema order;
    outputs: the arguments written in place; returns: names of the returned
    tensors; anchor: the argument others are checked against (dtype, device);
    scalars: scalar arguments with the values that make no sense for them;
    ints: integer arguments (a float or a string must be refused)."""

    name: str
    outputs: tuple = ()
    returns: tuple = ()
    anchor: str = ""
    scalars: dict = {}
    ints: tuple = ()

    def make(self, dtype=torch.float64, batch=3) -> dict:
        raise NotImplementedError

    def call_ops(self, a: dict):
        return getattr(torch.ops.localgrad, self.name)(*a.values())

    def call_wrapper(self, a: dict):
        raise NotImplementedError

    def reference(self, a: dict) -> dict:
        raise NotImplementedError

    def results(self, a: dict, returned) -> dict:
        """What a call left: its outputs (by name) and returned tensors."""
        out = {}
        for name in self.outputs:
            value = a[name]
            if isinstance(value, (list, tuple)):
                for i, t in enumerate(value):
                    out[f"{name}[{i}]"] = t
            elif value is not None and value.numel():
                out[name] = value
        if self.returns:
            values = returned if isinstance(returned, (tuple, list)) else (returned,)
            out.update(zip(self.returns, values))
        return out


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _rand(g, dtype, *shape, scale=1.0):
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)


class DfaProject(OpSpec):
    name = "dfa_project"
    outputs = ("out",)
    anchor = "error"
    scalars = {"slopes": [float("nan"), float("inf")]}
    ints = ("kinds",)

    def make(self, dtype=torch.float64, batch=3):
        g = _gen(1)
        return dict(
            error=_rand(g, dtype, batch, 4),
            feedback=_rand(g, dtype, 4, 8),
            activations=[_rand(g, dtype, batch, 5).tanh(), _rand(g, dtype, batch, 3).relu()],
            kinds=[4, 3],
            slopes=[0.0, 0.1],
            out=[torch.full((batch, 5), float("nan"), dtype=dtype), torch.full((batch, 3), float("nan"), dtype=dtype)],
        )

    def call_wrapper(self, a):
        ops.dfa_project(a["error"], a["feedback"], a["activations"], a["kinds"], a["slopes"], a["out"])

    def reference(self, a):
        widths = [o.shape[1] for o in a["out"]]
        got = reference.dfa_project(a["error"], a["feedback"], a["activations"], a["kinds"], a["slopes"], widths)
        return {f"out[{i}]": r for i, r in enumerate(got)}


class SignFeedback(OpSpec):
    name = "sign_feedback"
    outputs = ("out",)
    anchor = "weight"
    scalars = {"scale": [float("nan"), float("inf")]}
    ints = ("seed", "counter")

    def make(self, dtype=torch.float64, batch=3):
        g = _gen(2)
        return dict(weight=_rand(g, dtype, batch, 7), seed=3, counter=1, scale=0.5, random_magnitude=True,
                    out=torch.full((batch, 7), float("nan"), dtype=dtype))

    def call_wrapper(self, a):
        ops.sign_feedback(a["weight"], seed=a["seed"], counter=a["counter"], scale=a["scale"],
                          random_magnitude=a["random_magnitude"], out=a["out"])

    def reference(self, a):
        return {"out": reference.sign_feedback(a["weight"], a["seed"], a["counter"], a["scale"], a["random_magnitude"])}


class EqpropRelax(OpSpec):
    name = "eqprop_relax"
    outputs = ("states",)
    returns = ("ran",)
    anchor = "x"
    scalars = {"beta": [float("nan"), float("inf")], "tol": [float("nan")]}
    ints = ("steps", "nudge", "activation")

    def make(self, dtype=torch.float64, batch=3):
        g = _gen(3)
        return dict(
            x=_rand(g, dtype, batch, 4).sigmoid(),
            weights=[_rand(g, dtype, 5, 4, scale=0.5), _rand(g, dtype, 3, 5, scale=0.5)],
            biases=[_rand(g, dtype, 5, scale=0.1), _rand(g, dtype, 3, scale=0.1)],
            states=[torch.zeros(batch, 5, dtype=dtype), torch.zeros(batch, 3, dtype=dtype)],
            target=torch.eye(3, dtype=dtype)[torch.arange(batch) % 3],
            beta=0.5, nudge=1, activation=0, steps=7, async_update=False, tol=1e-4,
        )  # fmt: skip

    def call_wrapper(self, a):
        return ops.eqprop_relax(a["x"], a["weights"], a["biases"], a["states"], a["target"], beta=a["beta"],
                                nudge=a["nudge"], activation=a["activation"], steps=a["steps"],
                                async_update=a["async_update"], tol=a["tol"])  # fmt: skip

    def reference(self, a):
        states, ran = reference.eqprop_relax(*a.values())
        out = {f"states[{i}]": s for i, s in enumerate(states)}
        out["ran"] = ran
        return out


class EqpropUpdate(OpSpec):
    name = "eqprop_update"
    outputs = ("weight_grads", "bias_grads")
    anchor = "x"
    scalars = {"scale": [float("nan"), float("inf")]}

    def make(self, dtype=torch.float64, batch=3):
        g = _gen(4)
        nan = float("nan")
        return dict(
            x=_rand(g, dtype, batch, 4),
            states_a=[_rand(g, dtype, batch, 5), _rand(g, dtype, batch, 3)],
            states_b=[_rand(g, dtype, batch, 5), _rand(g, dtype, batch, 3)],
            scale=0.3,
            weight_grads=[torch.full((5, 4), nan, dtype=dtype), torch.full((3, 5), nan, dtype=dtype)],
            bias_grads=[torch.full((5,), nan, dtype=dtype), torch.full((3,), nan, dtype=dtype)],
        )

    def call_wrapper(self, a):
        ops.eqprop_update(a["x"], a["states_a"], a["states_b"], a["scale"], a["weight_grads"], a["bias_grads"])

    def reference(self, a):
        gw, gb = reference.eqprop_update(a["x"], a["states_a"], a["states_b"], a["scale"])
        out = {f"weight_grads[{i}]": t for i, t in enumerate(gw)}
        out.update({f"bias_grads[{i}]": t for i, t in enumerate(gb)})
        return out


def _rnn(g, dtype, batch, hidden=3, inputs=2, mask=True):
    m = (torch.rand(hidden, hidden, generator=g) < 0.6).to(dtype) if mask else None
    w = _rand(g, dtype, hidden, hidden, scale=0.5) * (m if m is not None else 1)
    return dict(weight_hh=w, h_prev=_rand(g, dtype, batch, hidden).tanh(), x=_rand(g, dtype, batch, inputs),
                dphi=_rand(g, dtype, batch, hidden).abs(), hh_mask=m)


class RtrlStep(OpSpec):
    name = "rtrl_step"
    returns = ("out",)
    anchor = "h_prev"
    scalars = {"alpha": [float("nan"), float("inf")]}

    def make(self, dtype=torch.float64, batch=3):
        g = _gen(5)
        r = _rnn(g, dtype, batch)
        return dict(influence=_rand(g, dtype, batch, 3, 3 * 6), **r, alpha=0.7)

    def call_wrapper(self, a):
        return ops.rtrl_step(*a.values())

    def reference(self, a):
        return {"out": ref_rnn.rtrl_step(*a.values())}


class SnapStep(OpSpec):
    name = "snap_step"
    returns = ("out",)
    anchor = "h_prev"
    scalars = {"alpha": [float("nan"), float("inf")]}

    def make(self, dtype=torch.float64, batch=3):
        from localgrad.online import LeakyRNN, SnAp

        g = _gen(6)
        r = _rnn(g, dtype, batch)
        model = LeakyRNN(1, 3, 1, recurrent_mask=r["hh_mask"].cpu())
        s = SnAp(model, 1)
        lists = dict(entry_unit=s.entry_unit, entry_row=s.entry_row, nbr_ptr=s.nbr_ptr, nbr_entry=s.nbr_entry,
                     nbr_weight=s.nbr_weight)
        return dict(influence=_rand(g, dtype, batch, s.entry_unit.numel(), 6), **r, alpha=0.6, **lists)

    def call_wrapper(self, a):
        return ops.snap_step(*a.values())

    def reference(self, a):
        return {"out": ref_rnn.snap_step(*a.values())}


class RfloChunk(OpSpec):
    name = "rflo_chunk"
    returns = ("trace", "grad")
    anchor = "h_prevs"
    scalars = {"alpha": [float("nan"), float("inf")]}

    def make(self, dtype=torch.float64, batch=3):
        g = _gen(7)
        T, H, I = 4, 3, 2
        m = (torch.rand(H, H, generator=g) < 0.6).to(dtype)
        return dict(trace=_rand(g, dtype, batch, H, I + H + 1), xs=_rand(g, dtype, T, batch, I),
                    h_prevs=_rand(g, dtype, T, batch, H).tanh(), dphis=_rand(g, dtype, T, batch, H).abs(),
                    signals=_rand(g, dtype, T, batch, H), hh_mask=m, alpha=0.4)

    def call_wrapper(self, a):
        return ops.rflo_chunk(*a.values())

    def reference(self, a):
        trace, grad = ref_rnn.rflo_chunk(*a.values())
        return {"trace": trace, "grad": grad}


class UoroStep(OpSpec):
    name = "uoro_step"
    returns = ("s_tilde", "theta_tilde")
    anchor = "h_prev"
    scalars = {"alpha": [float("nan"), float("inf")], "eps": [float("nan"), 0.0, -1.0]}

    def make(self, dtype=torch.float64, batch=3):
        g = _gen(8)
        r = _rnn(g, dtype, batch)
        nu = (torch.rand(batch, 3, generator=g) < 0.5).to(dtype) * 2 - 1
        return dict(s_tilde=_rand(g, dtype, batch, 3), theta_tilde=_rand(g, dtype, batch, 3, 6),
                    weight_hh=r["weight_hh"], nu=nu, h_prev=r["h_prev"], x=r["x"], dphi=r["dphi"],
                    hh_mask=r["hh_mask"], alpha=0.5, eps=1e-7)

    def call_wrapper(self, a):
        return ops.uoro_step(*a.values())

    def reference(self, a):
        s, th = ref_rnn.uoro_step(*a.values())
        return {"s_tilde": s, "theta_tilde": th}


EPROP_STATE = ("v", "a", "z", "psi", "y", "pre_trace", "adapt_trace", "filt_trace", "out_trace")


class EpropLifChunk(OpSpec):
    name = "eprop_lif_chunk"
    outputs = (*EPROP_STATE, "grad_w", "grad_out", "outputs")
    anchor = "x"
    scalars = {"loss_scale": [float("nan"), float("inf")], "neuron": [float("nan"), float("inf")]}

    def make(self, dtype=torch.float64, batch=3):
        g = _gen(9)
        T, I, H, K = 4, 3, 5, 2
        P = I + H
        w_rec = _rand(g, dtype, H, H, scale=0.5)
        w_rec.fill_diagonal_(0)
        z = torch.zeros(batch, H, dtype=dtype)
        return dict(
            x=_rand(g, dtype, T, batch, I, scale=2.0), weight_in=_rand(g, dtype, H, I, scale=1.5), weight_rec=w_rec,
            weight_out=_rand(g, dtype, K, H), bias_out=_rand(g, dtype, K, scale=0.1), feedback=_rand(g, dtype, K, H),
            target=torch.randint(-1, K, (T, batch), generator=g), signal=None,
            neuron=[0.9, 0.95, 0.5, 1.0, 0.3, 0.8], adaptive=True, signal_mode=1, loss_scale=1.0 / max(batch, 1),
            v=_rand(g, dtype, batch, H, scale=0.3), a=torch.zeros(batch, H, dtype=dtype), z=z,
            psi=torch.zeros(batch, H, dtype=dtype), y=torch.zeros(batch, K, dtype=dtype),
            pre_trace=torch.zeros(batch, P, dtype=dtype), adapt_trace=torch.zeros(batch, H, P, dtype=dtype),
            filt_trace=torch.zeros(batch, H, P, dtype=dtype), out_trace=torch.zeros(batch, H + 1, dtype=dtype),
            grad_w=torch.zeros(H, P, dtype=dtype), grad_out=torch.zeros(K, H + 1, dtype=dtype),
            outputs=torch.full((T, batch, K), float("nan"), dtype=dtype),
        )  # fmt: skip

    def call_wrapper(self, a):
        state = {k: a[k] for k in EPROP_STATE}
        mode = {0: "mse", 1: "ce", 2: "signal"}.get(a["signal_mode"], a["signal_mode"])
        ops.eprop_lif_chunk(a["x"], a["weight_in"], a["weight_rec"], a["weight_out"], a["bias_out"], a["feedback"],
                            a["target"], a["signal"], a["neuron"], a["adaptive"], mode, a["loss_scale"], state,
                            a["grad_w"], a["grad_out"], a["outputs"])  # fmt: skip

    def reference(self, a):
        b = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in a.items()}
        mode = {0: "mse", 1: "ce", 2: "signal"}[b["signal_mode"]]
        args = [b[k] for k in ("x", "weight_in", "weight_rec", "weight_out", "bias_out", "feedback", "target", "signal",
                               "neuron", "adaptive")]  # fmt: skip
        ref_eprop.eprop_lif_chunk(*args, mode, b["loss_scale"], *(b[k] for k in self.outputs))
        return {k: b[k] for k in self.outputs if b[k].numel()}


SPECS = {s.name: s for s in (DfaProject(), SignFeedback(), EqpropRelax(), EqpropUpdate(), RtrlStep(), SnapStep(),
                             RfloChunk(), UoroStep(), EpropLifChunk())}  # fmt: skip


class KfrtrlStep(OpSpec):
    """Rank 1, the fused reduced step (rank >= 2: the op returns the terms,
    tests/test_online_ops.py)."""

    name = "kfrtrl_step"
    returns = ("u", "A")
    anchor = "h_prev"
    scalars = {"alpha": [float("nan"), float("inf")], "eps": [float("nan"), 0.0, -1.0, float("inf")]}

    def make(self, dtype=torch.float64, batch=3):
        g = _gen(10)
        r = _rnn(g, dtype, batch, mask=False)
        signs = (torch.rand(batch, 2, generator=g) < 0.5).to(dtype) * 2 - 1
        return dict(u=_rand(g, dtype, batch, 1, 6), A=_rand(g, dtype, batch, 1, 3, 3), weight_hh=r["weight_hh"],
                    signs=signs, h_prev=r["h_prev"], x=r["x"], dphi=r["dphi"], alpha=0.5, eps=1e-7,
                    check_signs=True)

    def call_wrapper(self, a):
        return ops.kfrtrl_step(*a.values())

    def reference(self, a):
        u, A = ref_rnn.kfrtrl_step(*list(a.values())[:9])
        return {"u": u, "A": A}


SPECS[KfrtrlStep.name] = KfrtrlStep()
# Plastic layers (localgrad/reference/meta.py) --------------------------------
from localgrad.ops import meta as ops_meta  # noqa: E402
from localgrad.reference import meta as ref_meta  # noqa: E402


def _plastic(g, dtype, batch, T=4, O=3, I=5):
    return dict(u=_rand(g, dtype, T, batch, O), x=_rand(g, dtype, T, batch, I),
                weight=_rand(g, dtype, O, I, scale=0.3), alpha=_rand(g, dtype, O, I, scale=0.3),
                h0=_rand(g, dtype, batch, O, I, scale=0.2))


class PlasticEpisode(OpSpec):
    name = "plastic_episode"
    returns = ("ys", "h_T", "traces")
    anchor = "u"
    scalars = {"eta": [float("nan"), float("inf"), 1.0, -0.5]}
    ints = ("activation",)

    def make(self, dtype=torch.float64, batch=3):
        g = _gen(21)
        return dict(**_plastic(g, dtype, batch), eta=0.2, activation=4, store_traces=True,
                    modulation=torch.rand(4, batch, generator=g, dtype=torch.float64).to(dtype) * 2)

    def call_wrapper(self, a):
        return ops_meta.plastic_episode(*a.values())

    def reference(self, a):
        traces = []
        ys, h = ref_meta.plastic_episode(a["u"], a["x"], a["weight"], a["alpha"], a["eta"], a["h0"], a["activation"],
                                         a["modulation"], _traces=traces)
        out = {"ys": ys, "h_T": h}
        if traces:
            out["traces"] = torch.stack(traces)
        return out


class PlasticEpisodeBackward(OpSpec):
    name = "plastic_episode_backward"
    returns = ("grad_u", "grad_x", "grad_weight", "grad_alpha", "grad_eta", "grad_h0", "grad_modulation")
    anchor = "grad_ys"
    scalars = {"eta": [float("nan"), float("inf"), 1.0, -0.5]}
    ints = ("activation",)

    def make(self, dtype=torch.float64, batch=3):
        g = _gen(22)
        p = _plastic(g, dtype, batch)
        m = torch.rand(4, batch, generator=g, dtype=torch.float64).to(dtype) * 2
        ys, h = ref_meta.plastic_episode(p["u"], p["x"], p["weight"], p["alpha"], 0.2, p["h0"], 4, m)
        return dict(grad_ys=_rand(g, dtype, *ys.shape), grad_h=_rand(g, dtype, *h.shape), x=p["x"],
                    weight=p["weight"], alpha=p["alpha"], ys=ys, h_T=h, traces=None, eta=0.2, activation=4,
                    modulation=m)

    def call_wrapper(self, a):
        return ops_meta.plastic_episode_backward(*a.values())

    def reference(self, a):
        return dict(zip(self.returns, ref_meta.plastic_episode_backward(*a.values())))


SPECS.update({s.name: s for s in (PlasticEpisode(), PlasticEpisodeBackward())})
# --- target propagation ---


class TargetPropFeedbackGrads(OpSpec):
    """Two maps (L-DRL, gated), 2 noise samples per batch row."""

    name = "target_prop_feedback_grads"
    outputs = ("grad_weights", "grad_biases", "loss")
    anchor = "inputs"
    scalars = {"slopes": [float("nan"), float("inf")]}
    ints = ("kinds", "variant")

    def make(self, dtype=torch.float64, batch=3):
        g = _gen(11)
        widths, s = [5, 4, 3], 2
        nan = float("nan")
        return dict(
            inputs=[_rand(g, dtype, batch, widths[k]) for k in range(2)],
            outputs=[_rand(g, dtype, batch, widths[k + 1]) for k in range(2)],
            gates=[_rand(g, dtype, batch, widths[k + 1]).abs() for k in range(2)],
            weights=[_rand(g, dtype, widths[k + 1], widths[k], scale=0.5) for k in range(2)],
            biases=[_rand(g, dtype, widths[k + 1], scale=0.1) for k in range(2)],
            fb_weights=[_rand(g, dtype, widths[k], widths[k + 1], scale=0.5) for k in range(2)],
            fb_biases=[_rand(g, dtype, widths[k], scale=0.1) for k in range(2)],
            noise_in=[_rand(g, dtype, s * batch, widths[k], scale=0.1) for k in range(2)],
            noise_out=[_rand(g, dtype, s * batch, widths[k + 1], scale=0.1) for k in range(2)],
            kinds=[2, 4],
            slopes=[0.0, 0.0],
            variant=1,
            grad_weights=[torch.full((widths[k], widths[k + 1]), nan, dtype=dtype) for k in range(2)],
            grad_biases=[torch.full((widths[k],), nan, dtype=dtype) for k in range(2)],
            loss=torch.full((), nan, dtype=dtype),
        )

    def call_wrapper(self, a):
        ops.target_prop_feedback_grads(
            {0: "dtp", 1: "ldrl"}.get(a["variant"], a["variant"]), a["inputs"], a["outputs"], a["gates"],
            a["weights"], a["biases"], a["kinds"], a["slopes"], a["fb_weights"], a["fb_biases"], a["noise_in"],
            a["noise_out"], a["grad_weights"], a["grad_biases"], loss=a["loss"])

    def reference(self, a):
        from localgrad.reference import target_prop as ref_tp

        grads, total = ref_tp.map_feedback_gradients(
            "ldrl", a["inputs"], a["outputs"], a["gates"], a["weights"], a["biases"], a["kinds"], a["slopes"],
            a["fb_weights"], a["fb_biases"], a["noise_in"], a["noise_out"])
        out = {f"grad_weights[{k}]": gv for k, (gv, _) in enumerate(grads)}
        out.update({f"grad_biases[{k}]": gc for k, (_, gc) in enumerate(grads)})
        out["loss"] = total
        return out


SPECS[TargetPropFeedbackGrads.name] = TargetPropFeedbackGrads()
# --- Hebbian (localgrad/reference/hebbian.py) ---
from localgrad.reference import hebbian as ref_hebbian  # noqa: E402


class HebbianUpdate(OpSpec):
    """BCM (the one rule that reads theta), normalised."""

    name = "hebbian_update"
    outputs = ("u", "grad")
    anchor = "x"
    scalars = {"lr": [float("nan"), float("inf")], "lr_power": [float("nan")]}
    ints = ("rule", "rank")

    def make(self, dtype=torch.float64, batch=3):
        g = _gen(12)
        nan = float("nan")
        return dict(x=_rand(g, dtype, batch, 5), weight=_rand(g, dtype, 4, 5, scale=0.5),
                    theta=_rand(g, dtype, 4).abs(), rule=2, temperature=1.0, p=3.0, rank=2, anti=0.4, lr=0.5,
                    lr_power=0.0, normalize=True, u=torch.full((batch, 4), nan, dtype=dtype),
                    grad=torch.full((4, 5), nan, dtype=dtype))  # fmt: skip

    def call_wrapper(self, a):
        ops.hebbian_update(a["x"], a["weight"], a["rule"], theta=a["theta"], temperature=a["temperature"], p=a["p"],
                           rank=a["rank"], anti=a["anti"], lr=a["lr"], lr_power=a["lr_power"],
                           normalize=a["normalize"], u=a["u"], grad=a["grad"])  # fmt: skip

    def reference(self, a):
        u, grad = ref_hebbian.hebbian_update(a["x"], a["weight"], a["rule"], a["theta"], a["temperature"], a["p"],
                                             a["rank"], a["anti"], a["lr"], a["lr_power"], a["normalize"])  # fmt: skip
        return {"u": u, "grad": grad}


SPECS[HebbianUpdate.name] = HebbianUpdate()
# --- predictive coding (localgrad/reference/predictive_coding.py) ---
from localgrad.reference import predictive_coding as ref_pc  # noqa: E402


def _pc_net(g, dtype, batch, widths=(4, 5, 3)):
    L = len(widths) - 1
    return dict(
        x=_rand(g, dtype, batch, widths[0]),
        weights=[_rand(g, dtype, widths[k + 1], widths[k], scale=0.5) for k in range(L)],
        biases=[_rand(g, dtype, widths[k + 1], scale=0.1) for k in range(L)],
        states=[_rand(g, dtype, batch, widths[k]) for k in range(1, L)],
    )


class PredictiveCodingInfer(OpSpec):
    """IL (weights and biases are only read), a tanh hidden layer, MSE."""

    name = "predictive_coding_infer"
    outputs = ("states", "errors")
    unchecked_outputs = ("weights", "biases")  # written by iPC only; the table's call is IL
    anchor = "x"
    scalars = {"gamma": [float("nan"), float("inf")], "output_precision": [float("nan")]}
    ints = ("steps",)

    def make(self, dtype=torch.float64, batch=3):
        g = _gen(13)
        net = _pc_net(g, dtype, batch)
        nan = float("nan")
        return dict(x=net["x"], weights=net["weights"], biases=net["biases"], states=net["states"],
                    errors=[torch.full((batch, 5), nan, dtype=dtype), torch.full((batch, 3), nan, dtype=dtype)],
                    target=_rand(g, dtype, batch, 3), kinds=[1, 4], slopes=[0.0, 0.0], variant=0, loss=0,
                    output_precision=1.0, steps=4, gamma=0.2, lr=0.0)  # fmt: skip

    def call_wrapper(self, a):
        ops.predictive_coding_infer(a["x"], a["weights"], a["biases"], a["states"], a["target"], a["kinds"],
                                    a["slopes"], variant=a["variant"], loss=a["loss"],
                                    output_precision=a["output_precision"], steps=a["steps"], gamma=a["gamma"],
                                    lr=a["lr"], errors=a["errors"])  # fmt: skip

    def reference(self, a):
        states, errors, _, _ = ref_pc.predictive_coding_infer(
            a["x"], a["weights"], a["biases"], a["states"], a["target"], a["kinds"], a["slopes"], a["variant"],
            a["loss"], a["output_precision"], a["steps"], a["gamma"], a["lr"])
        out = {f"states[{i}]": s for i, s in enumerate(states)}
        out.update({f"errors[{i}]": e for i, e in enumerate(errors)})
        return out


class PredictiveCodingUpdate(OpSpec):
    name = "predictive_coding_update"
    outputs = ("weight_grads", "bias_grads")
    anchor = "x"
    scalars = {"scale": [float("nan"), float("inf")]}
    ints = ("kinds",)

    def make(self, dtype=torch.float64, batch=3):
        g = _gen(14)
        net = _pc_net(g, dtype, batch)
        nan = float("nan")
        return dict(x=net["x"], states=net["states"],
                    errors=[_rand(g, dtype, batch, 5), _rand(g, dtype, batch, 3)], kinds=[1, 4],
                    slopes=[0.0, 0.0], scale=0.5,
                    weight_grads=[torch.full((5, 4), nan, dtype=dtype), torch.full((3, 5), nan, dtype=dtype)],
                    bias_grads=[torch.full((5,), nan, dtype=dtype), torch.full((3,), nan, dtype=dtype)])  # fmt: skip

    def call_wrapper(self, a):
        ops.predictive_coding_update(a["x"], a["states"], a["errors"], a["kinds"], a["slopes"], a["scale"],
                                     a["weight_grads"], a["bias_grads"])  # fmt: skip

    def reference(self, a):
        gw, gb = ref_pc.predictive_coding_update(a["x"], a["states"], a["errors"], a["kinds"], a["slopes"],
                                                 a["scale"])  # fmt: skip
        out = {f"weight_grads[{i}]": t for i, t in enumerate(gw)}
        out.update({f"bias_grads[{i}]": t for i, t in enumerate(gb)})
        return out


SPECS.update({s.name: s for s in (PredictiveCodingInfer(), PredictiveCodingUpdate())})
# --- Forward-Forward (localgrad/reference/forward_forward.py) ---
from localgrad.reference import forward_forward as ref_ff  # noqa: E402


def _ff_name(table, code):
    """The wrapper takes names: a valid code becomes its name, anything else goes through as it is."""
    return table[code] if isinstance(code, int) and not isinstance(code, bool) and 0 <= code < len(table) else code


class ForwardForwardStep(OpSpec):
    """Two layers (relu, tanh), sum-of-squares goodness, the threshold loss, rms normalisation."""

    name = "forward_forward_step"
    outputs = ("grad_weights", "grad_biases", "goodness_out", "losses")
    anchor = "x_pos"
    scalars = {"alpha": [float("nan"), float("inf")], "eps": [float("nan"), -1.0], "thresholds": [float("nan")]}
    ints = ("kinds", "goodness", "loss", "normalize")

    def make(self, dtype=torch.float64, batch=3):
        g = _gen(15)
        widths = [5, 4, 3]
        nan = float("nan")
        return dict(x_pos=_rand(g, dtype, batch, widths[0]), x_neg=_rand(g, dtype, batch, widths[0]),
                    weights=[_rand(g, dtype, widths[k + 1], widths[k], scale=0.5) for k in range(2)],
                    biases=[_rand(g, dtype, widths[k + 1], scale=0.1) for k in range(2)], kinds=[2, 4],
                    slopes=[0.0, 0.0], thresholds=[1.0, 0.5], goodness=0, loss=0, normalize=1, alpha=1.0, eps=1e-8,
                    grad_weights=[torch.full((widths[k + 1], widths[k]), nan, dtype=dtype) for k in range(2)],
                    grad_biases=[torch.full((widths[k + 1],), nan, dtype=dtype) for k in range(2)],
                    goodness_out=torch.full((2, 2, batch), nan, dtype=dtype),
                    losses=torch.full((2,), nan, dtype=dtype))  # fmt: skip

    def call_wrapper(self, a):
        ops.forward_forward_step(a["x_pos"], a["x_neg"], a["weights"], a["biases"], a["kinds"], a["slopes"],
                                 a["thresholds"], _ff_name(ref_ff.GOODNESS, a["goodness"]),
                                 _ff_name(ref_ff.LOSSES, a["loss"]), _ff_name(ref_ff.NORMALIZE, a["normalize"]),
                                 a["alpha"], a["eps"], a["grad_weights"], a["grad_biases"], a["goodness_out"],
                                 a["losses"])  # fmt: skip

    def reference(self, a):
        gw, gb, good, losses = ref_ff.step(a["x_pos"], a["x_neg"], a["weights"], a["biases"], a["kinds"], a["slopes"],
                                           ref_ff.GOODNESS[a["goodness"]], ref_ff.LOSSES[a["loss"]], a["thresholds"],
                                           a["alpha"], ref_ff.NORMALIZE[a["normalize"]], a["eps"])  # fmt: skip
        out = {f"grad_weights[{i}]": t for i, t in enumerate(gw)}
        out.update({f"grad_biases[{i}]": t for i, t in enumerate(gb)})
        out.update({"goodness_out": good, "losses": losses})
        return out


SPECS[ForwardForwardStep.name] = ForwardForwardStep()
