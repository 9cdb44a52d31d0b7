"""High-level API misuse (the campaign's list and its neighbours): each case
runs one misuse and must end in an error naming the argument; the valid
neighbours (must_error=False) must run."""

from __future__ import annotations

import torch
from cases import Case
from torch import nn

NAN, INF = float("nan"), float("inf")


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def _convert(**kw):
    import localgrad

    localgrad.convert(_mlp(), **kw)


def _shared(rule):
    import localgrad

    shared = nn.Linear(6, 6)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), shared, nn.Tanh(), shared, nn.Tanh(), nn.Linear(6, 3))
    localgrad.convert(model, rule)
    if rule != "dfa":  # both positions train through the converted layer
        assert model[2] is model[4] and type(model[2]).__name__ == "FALinear", model
        model(torch.randn(2, 4)).sum().backward()
        assert model[2].weight.grad is not None


class _Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.first, self.out = nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x):
        return self.out(torch.tanh(self.first(torch.tanh(self.first(x)))))


def _dfa_twice():
    import localgrad

    model = localgrad.convert(_Twice(), "dfa")
    model(torch.randn(2, 4)).sum().backward()


def _eqprop(**kw):
    from localgrad.eqprop import EqPropMLP

    EqPropMLP(**{"sizes": [4, 5, 3], **kw})


def _lif(cls="LIF", **kw):
    from localgrad.online import lif

    getattr(lif, cls)(**{"input_size": 2, "hidden_size": 3, "output_size": 2, **kw})


def _rnn(**kw):
    from localgrad.online import LeakyRNN

    return LeakyRNN(**{"input_size": 2, "hidden_size": 3, "output_size": 1, **kw})


def _snap(n):
    from localgrad.online import SnAp

    SnAp(_rnn(), n)


def _dni(x=None, y=None, **kw):
    from localgrad.synthetic_gradients import DNI

    learner = DNI(_mlp(), **kw)
    x = torch.randn(3, 4) if x is None else x
    learner.step(x, torch.tensor([0, 1, 2]) if y is None else y)


def _recurrent_dni(final=False, **kw):
    from localgrad.synthetic_gradients import RecurrentDNI

    learner = RecurrentDNI(_rnn(), **kw)
    learner.reset(2)
    learner.run(torch.zeros(3, 2, 2), torch.zeros(3, 2, 1), final=final)


def _target_prop(x=None, y=None, model=None, **kw):
    from localgrad.target_prop import TargetProp

    learner = TargetProp(_mlp() if model is None else model, **kw)
    x = torch.randn(3, 4) if x is None else x
    learner.step(x, torch.tensor([0, 1, 2]) if y is None else y)


def _kfrtrl(**kw):
    from localgrad.online import KFRTRL

    KFRTRL(_rnn(), **kw)


def _batches(batch_size):
    from localgrad import data

    list(data.batches(torch.zeros(5, 2), torch.zeros(5), batch_size))


def _cli(*argv):
    from localgrad import cli

    cli.main(["demo", *argv])


def _op(fn):
    from localgrad import ops

    return lambda: fn(ops)


def cases() -> list[Case]:
    out = []

    def add(name, fn, names, must_error=True):
        out.append(Case(f"api/{name}", "api", "api", fn, tuple(names), must_error))

    for rule in ("fa", "usf", "brsf", "frsf", "dfa", "ba"):
        for scale in (NAN, INF, 0.0, -1.0):
            add(f"convert({rule},feedback_scale={scale})", lambda r=rule, s=scale: _convert(rule=r, feedback_scale=s),
                ("feedback_scale",))  # fmt: skip
        add(f"convert({rule},feedback_scale=0.1)", lambda r=rule: _convert(rule=r, feedback_scale=0.1), (), False)
    add("convert(seed='3')", lambda: _convert(rule="fa", seed="3"), ("seed",))
    add("convert(seed=2.5)", lambda: _convert(rule="dfa", seed=2.5), ("seed",))
    add("convert(rule='nope')", lambda: _convert(rule="nope"), ("rule",))
    add("convert(inject='input')", lambda: _convert(rule="dfa", inject="input"), ("inject",))
    add("convert(dfa,shared-module)", lambda: _shared("dfa"), ("dfa", "positions"))
    for rule in ("fa", "usf"):
        add(f"convert({rule},shared-module)", lambda r=rule: _shared(r), (), False)
    add("dfa:first-layer-twice", _dfa_twice, ("first",))
    for key, value in (("sizes", [4, 2.5, 3]), ("sizes", [4, "5", 3]), ("t_free", 2.5), ("beta", NAN),
                       ("tol", NAN), ("sizes", [4, 0, 3])):  # fmt: skip
        add(f"EqPropMLP({key}={value!r})", lambda k=key, v=value: _eqprop(**{k: v}), (key,))
    add("EqPropMLP(valid)", lambda: _eqprop(), (), False)
    for cls in ("LIF", "ALIF"):
        for key, value in (("tau_m", -1.0), ("tau_m", 0.0), ("dt", NAN), ("dt", -1.0), ("tau_out", INF),
                           ("v_th", NAN), ("hidden_size", 2.5)):  # fmt: skip
            add(f"{cls}({key}={value})", lambda c=cls, k=key, v=value: _lif(c, **{k: v}), (key,))
        add(f"{cls}(valid)", lambda c=cls: _lif(c), (), False)
    add("ALIF(tau_a=-5)", lambda: _lif("ALIF", tau_a=-5.0), ("tau_a",))
    for key, value in (("alpha", NAN), ("alpha", 0.0), ("hidden_size", 2.5), ("input_size", "2")):
        add(f"LeakyRNN({key}={value!r})", lambda k=key, v=value: _rnn(**{k: v}), (key,))
    add("LeakyRNN(valid)", lambda: _rnn(), (), False)
    for key, value in (("lam", NAN), ("lam", INF), ("lam", 1.5), ("lam", -0.5), ("lam", "0"), ("conditioned", "yes"),
                       ("conditioned", 2), ("split", [0]), ("split", [5]), ("split", [3, 1]), ("split", [2.5]),
                       ("split", "middle"), ("split", []), ("sg_hidden", (0,)), ("sg_hidden", (2.5,)),
                       ("sg_hidden", 4), ("loss", "l1")):  # fmt: skip
        add(f"DNI({key}={value!r})", lambda k=key, v=value: _dni(**{k: v}), (key,))
    for name, x, y in (("x", torch.randn(3, 5), None), ("x", torch.randn(3, 4, dtype=torch.float64), None),
                       ("y", None, torch.tensor([0, 1])), ("y", None, torch.tensor([0, 1, 3])),
                       ("y", None, torch.zeros(3)), ("y", None, torch.tensor([True, False, True]))):  # fmt: skip
        add(f"DNI.step({name}={tuple(x.shape) if x is not None else tuple(y.shape)})",
            lambda a=x, b=y: _dni(a, b), (name,))
    add("DNI(valid)", lambda: _dni(), (), False)
    add("DNI(empty batch)", lambda: _dni(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), conditioned=True), (),
        False)  # fmt: skip
    add("RecurrentDNI(sg_hidden=(0,))", lambda: _recurrent_dni(sg_hidden=(0,)), ("sg_hidden",))
    add("RecurrentDNI.run(final='yes')", lambda: _recurrent_dni(final="yes"), ("final",))
    add("RecurrentDNI(valid)", lambda: _recurrent_dni(), (), False)
    for key, value in (("variant", "bp"), ("beta", 0.0), ("beta", NAN), ("beta", "0.1"), ("noise", -1.0),
                       ("noise", INF), ("gamma", NAN), ("lam", -1.0), ("lam", True), ("seed", 2.5), ("seed", "3"),
                       ("loss", "l1"), ("feedback", "mirror"), ("ortho", NAN)):  # fmt: skip
        add(f"TargetProp({key}={value!r})", lambda k=key, v=value: _target_prop(**{k: v}), (key,))
    add("TargetProp(gait, non-square)", lambda: _target_prop(variant="gait"), ("gait", "square"))
    for name, x, y in (("x", torch.randn(3, 5), None), ("x", torch.randn(3, 4, dtype=torch.float64), None),
                       ("y", None, torch.tensor([0, 1])), ("y", None, torch.tensor([0, 1, 3]))):  # fmt: skip
        add(f"TargetProp.step({name}={tuple(x.shape) if x is not None else tuple(y.shape)})",
            lambda a=x, b=y: _target_prop(a, b), (name,))
    for variant in ("tp", "dtp", "ddtp", "ldrl"):
        add(f"TargetProp({variant}, valid)", lambda v=variant: _target_prop(variant=v), (), False)
    add("TargetProp(empty batch)", lambda: _target_prop(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)), (),
        False)  # fmt: skip
    for key, value in (("rank", 0), ("rank", 1.5), ("rank", True), ("eps", 0.0), ("eps", NAN), ("seed", "3")):
        add(f"KFRTRL({key}={value!r})", lambda k=key, v=value: _kfrtrl(**{k: v}), (key,))
    add("KFRTRL(rank=2)", lambda: _kfrtrl(rank=2), (), False)
    add("SnAp(n=1.5)", lambda: _snap(1.5), ("n",))
    add("SnAp(n=0)", lambda: _snap(0), ("n",))
    for bs in (-1, 0, 2.5):
        add(f"batches(batch_size={bs})", lambda b=bs: _batches(b), ("batch_size",))
    for argv, name in ((("--batch-size", "-5"), "--batch-size"), (("--epochs", "0"), "--epochs"),
                       (("--lr", "nan"), "--lr"), (("--lr", "-1"), "--lr"), (("--seed", "2.5"), "--seed"),
                       (("--device", "gpu"), "--device"), (("--hidden", "0,5"), "--hidden"),
                       (("--hidden", "a"), "--hidden"), (("--rules", "nope"), "--rules"),
                       (("--beta", "inf"), "--beta"), (("--iterations", "-2"), "--iterations"),
                       (("--mode", "online", "--alpha", "1.5"), "--alpha"),
                       (("--mode", "online", "--rules", "fa"), "--rules")):  # fmt: skip
        add(f"cli{argv}", lambda a=argv: _cli(*a), (name,))
    add("ops.sign_feedback(seed='3')", _op(lambda o: o.sign_feedback(torch.zeros(2), seed="3")), ("seed",))
    add("ops.sign_feedback(seed=2.7)", _op(lambda o: o.sign_feedback(torch.zeros(2), seed=2.7)), ("seed",))
    add("ops.dfa_project(kinds=[2.7])", _op(lambda o: o.dfa_project(torch.zeros(2, 3), torch.zeros(3, 4),
        [torch.zeros(2, 4)], [2.7])), ("kinds",))  # fmt: skip
    add("ops.eqprop_relax(steps=2.5)", _op(lambda o: o.eqprop_relax(torch.zeros(2, 3), [torch.zeros(4, 3)],
        [torch.zeros(4)], [torch.zeros(2, 4)], steps=2.5)), ("steps",))  # fmt: skip
    add("ops.eqprop_relax(nudge='nope')", _op(lambda o: o.eqprop_relax(torch.zeros(2, 3), [torch.zeros(4, 3)],
        [torch.zeros(4)], [torch.zeros(2, 4)], nudge="nope")), ("nudge",))  # fmt: skip
    add("ops.uoro_step(eps=0)", _op(lambda o: o.uoro_step(*[torch.zeros(1)] * 8, 0.5, eps=0.0)), ("eps",))
    add("ops.kfrtrl_step(eps=0)", _op(lambda o: o.kfrtrl_step(*[torch.zeros(1)] * 7, 0.5, eps=0.0)), ("eps",))
    add("ops.kfrtrl_step(check_signs='no')", _op(lambda o: o.kfrtrl_step(*[torch.zeros(1)] * 7, 0.5,
        check_signs="no")), ("check_signs",))  # fmt: skip
    return out
