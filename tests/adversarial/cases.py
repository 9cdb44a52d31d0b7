"""The adversarial cases of every op, and the oracle that judges one.

A case is a call built from an op's valid call (op_specs.py) with one thing
wrong or unusual: a dtype, a rank, a size, a layout (transposed, sliced,
expanded, overlapping, aliasing an output), an empty or huge size, a NaN or
infinite scalar or element, a meta tensor, a tensor requiring grad. It runs
at the torch.ops level or through the localgrad.ops wrapper. The oracle:

- "error": the call raised an error whose message names the argument the
  case changed (or, for a dtype/device mismatch, the argument it is checked
  against);
- "match": the call succeeded and every output equals the reference's result
  on the same inputs (NaN where the reference has NaN);
- anything else is a "failure" (a silent success where the reference raises,
  a wrong result, an error that names no argument, a crash).
Cases marked must_error (outputs sharing memory, meta tensors mixed with
real ones, outputs requiring grad) only pass as "error".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch
from op_specs import SPECS

import localgrad  # noqa: F401  (registers the ops)


@dataclass
class Case:
    id: str
    op: str
    level: str  # "ops" (torch.ops.localgrad) or "wrapper" (localgrad.ops)
    build: object  # () -> dict of arguments
    names: tuple  # argument names an error must mention (any of them)
    must_error: bool = False
    meta: bool = False  # all tensors on meta: judged against the CPU call
    extra: dict = field(default_factory=dict)


# -- tensor slots -------------------------------------------------------------


def slots(args: dict):
    """(name, index or None) of every tensor argument."""
    for name, value in args.items():
        if isinstance(value, torch.Tensor):
            yield name, None
        elif isinstance(value, list) and value and all(isinstance(v, torch.Tensor) or v is None for v in value):
            for i, v in enumerate(value):
                if isinstance(v, torch.Tensor):
                    yield name, i


def get(args, slot):
    name, i = slot
    return args[name] if i is None else args[name][i]


def put(args, slot, value):
    name, i = slot
    if i is None:
        args[name] = value
    else:
        args[name] = list(args[name])
        args[name][i] = value


def slot_name(slot):
    return slot[0] if slot[1] is None else f"{slot[0]}[{slot[1]}]"


def _same_values_strided(t: torch.Tensor, how: str) -> torch.Tensor:
    """t's values in another layout: column-major ("transposed") or a view
    with stride 2 along the last dimension ("sliced")."""
    if how == "transposed":
        return t.mT.contiguous().mT if t.dim() >= 2 else t
    wide = torch.empty(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype).fill_(float("nan") if t.is_floating_point() else -7)
    view = wide[..., ::2]
    view.copy_(t)
    return view


def _grown(t: torch.Tensor) -> torch.Tensor:
    pad = torch.zeros(*t.shape[:-1], 1, dtype=t.dtype)
    return torch.cat([t, pad], dim=-1)


# -- generators ---------------------------------------------------------------


def op_cases(op: str, level: str) -> list[Case]:
    spec = SPECS[op]
    base = spec.make
    cases: list[Case] = []

    def add(kind, mutate, names, must_error=False, build=None, meta_twin=False):
        def build_case(mutate=mutate):
            a = base() if build is None else build()
            mutate(a)
            return a

        cid = f"{op}/{level}/{kind}"
        cases.append(Case(cid, op, level, build_case, tuple(names), must_error))
        if meta_twin and level == "ops":
            cases.append(Case(cid + "/meta", op, level, build_case, tuple(names), meta=True))

    add("valid", lambda a: None, (), meta_twin=True)
    add("float32", lambda a: None, (), build=lambda: base(torch.float32))
    add("empty-batch", lambda a: None, (), build=lambda: base(batch=0), meta_twin=True)
    add("batch-1", lambda a: None, (), build=lambda: base(batch=1))
    anchor = spec.anchor
    outputs = set(spec.outputs)
    template = base()
    all_names = tuple(dict.fromkeys(n for n, _ in slots(template)))
    for slot in list(slots(template)):
        if level == "wrapper" and slot[0] != anchor and slot[0] not in outputs:
            continue  # the wrapper passes tensors through: its anchor and outputs stand for the rest
        t = get(template, slot)
        name = slot_name(slot)
        is_out = slot[0] in outputs
        is_float = t.is_floating_point()
        mismatch_names = (slot[0], anchor)

        def with_(fn, slot=slot):
            return lambda a: put(a, slot, fn(get(a, slot), a))

        # dtypes
        add(f"{name}:int32", with_(lambda t, a: t.to(torch.int32)), mismatch_names, meta_twin=True)
        if is_float:
            other = torch.float32 if t.dtype == torch.float64 else torch.float64
            add(f"{name}:{str(other)[6:]}", with_(lambda t, a, o=other: t.to(o)), mismatch_names, meta_twin=True)
            add(f"{name}:float16", with_(lambda t, a: t.to(torch.float16)), mismatch_names, meta_twin=True)
        else:
            add(f"{name}:float64", with_(lambda t, a: t.to(torch.float64)), mismatch_names, meta_twin=True)
        # ranks and sizes
        add(f"{name}:rank+1", with_(lambda t, a: t.unsqueeze(0)), (slot[0],), meta_twin=True)
        if t.dim() >= 1 and t.shape[0] >= 1:
            add(f"{name}:rank-1", with_(lambda t, a: t[0]), (slot[0],), meta_twin=True)
        if t.dim() >= 1:
            # A size is checked against the sizes of other arguments: the error
            # may name whichever of the pair is checked second.
            add(f"{name}:size+1", with_(lambda t, a: _grown(t)), all_names, meta_twin=True)
        # layouts with the same values
        if t.dim() >= 2:
            add(f"{name}:transposed", with_(lambda t, a: _same_values_strided(t, "transposed")), (slot[0],))
        if t.dim() >= 1 and t.shape[-1] > 1:
            add(f"{name}:sliced", with_(lambda t, a: _same_values_strided(t, "sliced")), (slot[0],))
        # expanded: rows share memory
        if t.dim() >= 1 and t.shape[0] > 1:
            add(f"{name}:expanded", with_(lambda t, a: t[:1].expand_as(t)), (slot[0],), must_error=is_out)
        # meta among real tensors
        add(f"{name}:meta", with_(lambda t, a: t.to("meta")), mismatch_names + ("meta",), must_error=True)
        # requires grad
        if is_float:
            add(f"{name}:requires-grad", with_(lambda t, a: t.clone().requires_grad_()), (slot[0],),
                must_error=is_out)  # fmt: skip
        # NaN / inf elements of inputs
        if is_float and not is_out and t.numel():
            for bad in ("nan", "inf"):
                def poke(t, a, bad=bad):
                    t = t.clone()
                    t.view(-1)[t.numel() // 2] = float(bad)
                    return t

                add(f"{name}:{bad}-element", with_(poke), (slot[0],))
    # outputs sharing memory with another argument of the same shape
    for out_slot in [s for s in slots(template) if s[0] in outputs]:
        target = get(template, out_slot)
        for other in slots(template):
            if other == out_slot or get(template, other).shape != target.shape:
                continue
            if get(template, other).dtype != target.dtype:
                continue

            def alias(a, out_slot=out_slot, other=other):
                put(a, out_slot, get(a, other))

            add(f"{slot_name(out_slot)}:aliases-{slot_name(other)}", alias, (out_slot[0], other[0]), must_error=True)
        if target.dim() >= 2 and target.shape[-1] > 1:
            # rows overlapping by one element
            def overlap(a, out_slot=out_slot):
                t = get(a, out_slot)
                rows, cols = t.shape[-2], t.shape[-1]
                flat = torch.zeros(t.numel(), dtype=t.dtype)
                stride = list(t.stride())
                stride[-2] = cols - 1
                put(a, out_slot, flat.as_strided(t.shape, stride))

            add(f"{slot_name(out_slot)}:overlapping-rows", overlap, (out_slot[0],), must_error=True)
    # scalars
    for name, values in spec.scalars.items():
        for v in values:
            def set_scalar(a, name=name, v=v):
                a[name] = [v] * len(a[name]) if isinstance(a[name], list) else v

            add(f"{name}={v}", set_scalar, (name,))
    if level == "wrapper":
        for name in spec.ints:
            for v in (2.7, "3"):
                def set_int(a, name=name, v=v):
                    a[name] = [v] * len(a[name]) if isinstance(a[name], list) else v

                add(f"{name}={v!r}", set_int, (name,), must_error=True)
    cases += extra_cases(op, level, add, base)
    return cases


def extra_cases(op, level, add, base):
    """Op-specific misuse beyond the generic mutations (the campaign's findings)."""
    out = []
    if op == "snap_step":
        def strided_ptr(a):  # F1
            raw = torch.empty(2 * a["nbr_ptr"].numel(), dtype=torch.long).fill_(10**9)
            raw[::2] = a["nbr_ptr"]
            a["nbr_ptr"] = raw[::2]

        add("nbr_ptr:strided-valid", strided_ptr, ("nbr_ptr",))

        def bad_ptr(a):
            raw = torch.tensor([0] + [10**9] * (2 * a["nbr_ptr"].numel() - 1))
            a["nbr_ptr"] = raw[::2]

        add("nbr_ptr:strided-out-of-range", bad_ptr, ("nbr_ptr",), must_error=True)
        add("nbr_entry:out-of-range", lambda a: a["nbr_entry"].fill_(10**6), ("nbr_entry",), must_error=True)
    if op == "eprop_lif_chunk":
        add("target:label>=n_out", lambda a: a["target"].fill_(2), ("target",), must_error=True)  # F4/S8
        add("z:non-binary", lambda a: a["z"].fill_(0.5), ("z",))  # F10
        add("v:nan-membrane", lambda a: a["v"].fill_(float("nan")), ("v",))  # F10

        def v_th(a, value):
            a["neuron"] = list(a["neuron"])
            a["neuron"][3] = value

        add("v_th=inf", lambda a: v_th(a, float("inf")), ("v_th",), must_error=True)
        add("v_th=0", lambda a: v_th(a, 0.0), ("v_th",), must_error=True)
        add("signal_mode=2-without-signal", lambda a: a.update(signal_mode=2), ("signal",), must_error=True)
    if op == "kfrtrl_step":
        add("signs:zero", lambda a: a["signs"].fill_(0), ("signs",), must_error=True)
        add("signs:two", lambda a: a["signs"].fill_(2), ("signs",), must_error=True)
        add("signs:unchecked-valid", lambda a: a.update(check_signs=False), ())
    if op == "eqprop_relax":
        add("states:same-tensor", lambda a: a.update(states=[a["states"][0], a["states"][0]]), ("states",),
            must_error=True)  # fmt: skip
        add("states:expanded-zeros", lambda a: a.update(
            states=[torch.zeros(5, dtype=a["x"].dtype).expand(a["x"].shape[0], 5), a["states"][1]]),
            ("states",), must_error=True)  # F3  # fmt: skip

        def nan_row(a):  # F8 / R2
            a["x"] = a["x"].clone()
            a["x"][1, 0] = float("nan")

        add("x:nan-row-tol", nan_row, ("x",))
        add("steps=huge-tol", lambda a: a.update(steps=2**40, tol=1e-3, nudge=0), ("steps",))
        add("steps=-1", lambda a: a.update(steps=-1), ("steps",), must_error=True)
        add("nudge=7", lambda a: a.update(nudge=7), ("nudge",), must_error=True)
        add("activation=-1", lambda a: a.update(activation=-1), ("activation",), must_error=True)
        add("target:missing", lambda a: a.update(target=None), ("target",), must_error=True)
        for layers in (0, 17):
            def many(a, layers=layers):
                w, b = a["weights"][1], a["biases"][1]
                n = w.shape[0]
                sq = torch.zeros(n, n, dtype=w.dtype)
                a["weights"] = ([] if layers == 0 else [a["weights"][0], w] + [sq] * (layers - 2))
                a["biases"] = ([] if layers == 0 else [a["biases"][0], b] + [b] * (layers - 2))
                a["states"] = ([] if layers == 0 else [a["states"][0]] + [a["states"][1].clone() for _ in range(layers - 1)])

            add(f"layers={layers}", many, ("weights", "layers"), must_error=True)
    if op == "sign_feedback":
        add("weight:nan-random-magnitude", lambda a: a["weight"].view(-1).__setitem__(0, float("nan")), ("weight",))
        def usf_nan(a):  # R1
            a["weight"].view(-1)[0] = float("nan")
            a["random_magnitude"] = False

        add("weight:nan-usf", usf_nan, ("weight",))
        add("weight:scalar-0d", lambda a: a.update(weight=a["weight"][0, 0].clone(), out=torch.empty((), dtype=a["weight"].dtype)), ("weight",))
    if op == "dfa_project":
        add("activations:None-for-tanh", lambda a: a.update(activations=[None, a["activations"][1]]),
            ("activations",), must_error=True)  # fmt: skip
        add("kinds=99", lambda a: a.update(kinds=[99, 3]), ("kinds",), must_error=True)
        add("kinds:too-few", lambda a: a.update(kinds=[4]), ("kinds",), must_error=True)

        def out_is_acts(a):  # F2
            buf = torch.randn(a["error"].shape[0], 8, dtype=a["error"].dtype).tanh()
            h = list(buf.split([5, 3], 1))
            a.update(activations=h, out=h, kinds=[4, 4])

        add("out:is-activations", out_is_acts, ("out", "activations"), must_error=True)

        def out_is_error(a):
            a["error"] = torch.randn(a["error"].shape[0], 5, dtype=a["error"].dtype)
            a["feedback"] = torch.randn(5, 8, dtype=a["error"].dtype)
            a["out"] = [a["error"], a["out"][1]]

        add("out:is-error", out_is_error, ("out", "error"), must_error=True)
    return out


# -- the oracle -------------------------------------------------------------------


def _to_meta(value):
    if isinstance(value, torch.Tensor):
        return value.to("meta")
    if isinstance(value, list):
        return [_to_meta(v) for v in value]
    return value


def _clone(value):
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def names_argument(message: str, names) -> bool:
    return any(re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", message) for n in names if n)


def _close(actual: torch.Tensor, expected: torch.Tensor, nonfinite_input: bool = False) -> str | None:
    """None when equal to the reference within rounding, NaN where it has NaN.
    With an inf or NaN input element, the ops' algebra may turn an inf the
    reference has into a NaN or back (inf - inf in another order): then
    non-finite must meet non-finite, and the finite entries must agree."""
    if actual.shape != expected.shape:
        return f"shape {tuple(actual.shape)} != reference {tuple(expected.shape)}"
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    if nonfinite_input:
        if not torch.equal(a.isfinite(), e.isfinite()):
            return f"non-finite at other places than the reference ({int((~a.isfinite()).sum())} vs {int((~e.isfinite()).sum())})"
        a, e = a.where(a.isfinite(), 0.0), e.where(e.isfinite(), 0.0)
    if not torch.equal(a.isnan(), e.isnan()):
        return f"NaN at other places than the reference ({int(a.isnan().sum())} vs {int(e.isnan().sum())})"
    a, e = a.nan_to_num(0.0, 0.0, 0.0), e.nan_to_num(0.0, 0.0, 0.0)
    tol = 1e-4 if torch.float32 in (actual.dtype, expected.dtype) else 1e-9
    scale = max(e.abs().max().item() if e.numel() else 0.0, 1.0)
    err = (a - e).abs().max().item() if e.numel() else 0.0
    return None if err <= tol * scale else f"max error {err:.3g} (scale {scale:.3g})"


# Results that differ from the reference by design, with the reason (the
# suite counts them as "known", and fails if one of them starts to match).
KNOWN = {
    "eprop_lif_chunk/ops/weight_rec:nan-element": "kernels add only the columns of neurons that spiked; "
    "the reference's dense W z makes a NaN in a silent neuron's column NaN everywhere (0 * NaN)",
    "eprop_lif_chunk/ops/weight_rec:inf-element": "as weight_rec:nan-element (0 * inf)",
    "eprop_lif_chunk/ops/weight_out:nan-element": "as weight_rec:nan-element, for the readout W_out z",
    "eprop_lif_chunk/ops/weight_out:inf-element": "as weight_rec:nan-element, for the readout W_out z",
}


def judge(case: Case) -> tuple[str, str]:
    outcome, detail = _judge(case)
    reason = KNOWN.get(case.id.replace("/wrapper/", "/ops/"))
    if reason is not None:
        return ("known", reason) if outcome == "failure" else ("failure", f"known deviation now {outcome}: {reason}")
    return outcome, detail


def _judge(case: Case) -> tuple[str, str]:
    """(outcome, detail): outcome "error", "match" or "failure"."""
    if case.op == "api":
        return _judge_api(case)
    spec = SPECS[case.op]
    try:
        args = case.build()
    except Exception as exc:  # a generator bug, not an op bug
        return "failure", f"case could not be built: {type(exc).__name__}: {exc}"
    if case.meta:
        return _judge_meta(case, spec, args)
    expected, ref_error = None, None
    if not case.must_error:  # (a refused call's reference may not even fit in memory)
        try:
            expected = spec.reference({k: _clone(v) for k, v in args.items()})
        except Exception as exc:
            ref_error = exc
    call = spec.call_ops if case.level == "ops" else spec.call_wrapper
    try:
        returned = call(args)
    except (TypeError, ValueError, RuntimeError, IndexError, NotImplementedError) as exc:
        message = str(exc).split("\nException raised from")[0]
        if not case.names or names_argument(message, case.names):
            return "error", f"{type(exc).__name__}: {message[:160]}"
        return "failure", f"error names none of {case.names}: {type(exc).__name__}: {message[:200]}"
    if case.must_error:
        return "failure", "silent success on input that must be refused"
    if ref_error is not None:
        return "failure", f"succeeded where the reference raises {type(ref_error).__name__}: {str(ref_error)[:120]}"
    got = spec.results(args, returned)
    nonfinite_input = "-element" in case.id
    for key, value in expected.items():
        if key not in got:
            if value.numel() == 0:
                continue
            return "failure", f"no result {key}"
        problem = _close(got[key], value, nonfinite_input)
        if problem:
            return "failure", f"{key}: {problem}"
    return "match", ""


def _judge_api(case):
    """A high-level misuse: build() runs it; it must raise an error naming the
    argument (argparse: exit status 2 with the option in its message), unless
    the case is a valid neighbour (must_error False), which must run."""
    import contextlib
    import io

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            case.build()
    except SystemExit as exc:
        message = stderr.getvalue()
        if exc.code == 2 and names_argument(message, case.names):
            return "error", message.strip().splitlines()[-1][:160]
        return "failure", f"exit {exc.code}: {message[-200:]}"
    except (TypeError, ValueError, RuntimeError) as exc:
        message = str(exc)
        if not case.must_error:
            return "failure", f"valid use raised {type(exc).__name__}: {message[:200]}"
        if names_argument(message, case.names):
            return "error", f"{type(exc).__name__}: {message[:160]}"
        return "failure", f"error names none of {case.names}: {type(exc).__name__}: {message[:200]}"
    if case.must_error:
        return "failure", "silent success on misuse"
    return "match", "valid neighbour ran"


def _judge_meta(case, spec, args):
    """All tensors on meta: the fake kernel must refuse what the CPU kernel
    refuses (except what needs the data) and accept what it accepts."""
    cpu_args = {k: _clone(v) for k, v in args.items()}
    try:
        spec.call_ops(cpu_args)
        cpu_error = None
    except Exception as exc:
        cpu_error = exc
    meta_args = {k: _to_meta(v) for k, v in args.items()}
    try:
        returned = spec.call_ops(meta_args)
    except Exception as exc:
        message = str(exc)
        if cpu_error is None:
            return "failure", f"fake kernel refuses a call the CPU kernel accepts: {message[:200]}"
        if case.names and not names_argument(message, case.names):
            return "failure", f"fake kernel's error names none of {case.names}: {message[:200]}"
        return "error", message[:160]
    if cpu_error is not None:
        return "failure", f"fake kernel accepts a call the CPU kernel refuses ({str(cpu_error)[:160]})"
    cpu_results = spec.results(cpu_args, spec.call_ops({k: _clone(v) for k, v in args.items()}))
    for key, value in spec.results(meta_args, returned).items():
        if key in cpu_results and (value.shape != cpu_results[key].shape or value.dtype != cpu_results[key].dtype):
            return "failure", f"fake {key}: {tuple(value.shape)} {value.dtype} vs {tuple(cpu_results[key].shape)}"
    return "match", "fake kernel agrees"


def batches() -> dict[str, list[Case]]:
    """The suite, one batch per op and level (one subprocess each), plus the
    high-level API (api_cases.py)."""
    import api_cases

    out = {}
    for op in SPECS:
        for level in ("ops", "wrapper"):
            out[f"{op}/{level}"] = op_cases(op, level)
    out["api"] = api_cases.cases()
    # Each case is a pytest item selected by its id: a repeated id gets #2, #3.
    for cases in out.values():
        seen: dict[str, int] = {}
        for case in cases:
            seen[case.id] = seen.get(case.id, 0) + 1
            if seen[case.id] > 1:
                case.id = f"{case.id}#{seen[case.id]}"
    return out


_ = math  # keep the import for case authors' lambdas
