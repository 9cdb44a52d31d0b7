"""Command line: `localgrad demo`, `localgrad info`, `localgrad bench`."""

from __future__ import annotations

import argparse
import json
import math
import re

from localgrad.experiments.demo import DEFAULT_RULES, HEBBIAN_ROWS

META_TASKS = ("oja", "fewshot", "fixed-weight")  # localgrad.experiments.meta_demos.TASKS (tests/test_meta_demo.py checks)


# argparse `type=` validators: a bad value ends in an argparse error (usage
# and the option's name), never in a traceback or a silently empty run.


def _int(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _int(text, 1)


def _nonnegative_int(text: str) -> int:
    return _int(text, 0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def _unit_float(text: str) -> float:
    value = _positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {text!r}")
    return value


def _ints(text: str) -> list[int]:
    values = [_positive_int(v) for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"needs at least one positive width, got {text!r}")
    return values


def _device(text: str) -> str:
    if text in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", text):
        return text
    raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, got {text!r}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="localgrad", description="Local learning rules for PyTorch")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train one model with several rules on MNIST digits and compare")
    demo.add_argument(
        "--rules", default=",".join(DEFAULT_RULES), help=f"comma-separated rules (default: {','.join(DEFAULT_RULES)}; "
        "any name of localgrad.rules(): static ones in the static mode, sequence ones in the online mode; "
        f"hebbian mode: {','.join(HEBBIAN_ROWS)})"
    )
    demo.add_argument("--model", default="mlp", choices=["mlp", "cnn", "strided"],
                      help="MLP, LeNet-like CNN, or strided: the strided-conv net of the CNN ldrl row "
                           "(default rules there: backprop, ldrl)")
    demo.add_argument("--dataset", default="mnist", choices=["mnist", "digits", "fashion"],
                      help="mnist: 5,000 MNIST digits (pip ships them); digits: 8x8 digits; fashion: all 70,000 "
                      "Fashion-MNIST images (apt-get install dataset-fashion-mnist, or LOCALGRAD_DATA)")
    demo.add_argument("--hidden", type=_ints, default=[256, 256], help="hidden widths, e.g. 256,256")
    demo.add_argument("--epochs", type=_positive_int, default=15)
    demo.add_argument("--batch-size", type=_positive_int, default=64)
    demo.add_argument("--lr", type=_positive_float, default=None,
                      help="learning rate (default: each rule's own, Learner.default_optimizer; online mode 1e-2)")
    demo.add_argument("--hebbian-width", type=_positive_int, default=2000,
                      help="hebbian mode: units of the Hebbian layer (and of probe-random's random features)")
    demo.add_argument("--seed", type=_nonnegative_int, default=0)
    demo.add_argument("--device", type=_device, default="auto", help="auto, cpu or cuda")
    demo.add_argument("--plot", default="demo_accuracy.png", help="accuracy plot file ('' for none)")
    demo.add_argument("--no-progress", action="store_true")
    demo.add_argument("--mode", default="static", choices=["static", "online", "hebbian", "meta"],
                      help="online: a leaky RNN on a sequence task, online rules vs BPTT (localgrad.online); "
                      "hebbian: one wide Hebbian layer's features read by a linear probe; "
                      "meta: meta-learned plasticity (localgrad.meta)")
    demo.add_argument("--task", default="delayed", choices=["delayed", "mnist1d", "fashion", "spiking", *META_TASKS],
                      help="online mode's task: delayed recall, MNIST-1D or sequential Fashion-MNIST (28 rows as 28 "
                      "steps) with the leaky RNN, or spiking: "
                      "MNIST-1D with an ALIF network, e-prop vs surrogate BPTT; meta mode's: "
                      f"{', '.join(META_TASKS)} (default: all three)")
    demo.add_argument("--alpha", type=_unit_float, default=None,
                      help="online mode: the leaky RNN's alpha (default 0.5 delayed, 0.1 mnist1d and fashion)")
    demo.add_argument("--neuron", default="alif", choices=["alif", "lif"], help="spiking task's neurons")
    demo.add_argument("--iterations", type=_positive_int, default=150, help="online mode: minibatches per rule")

    sub.add_parser("info", help="print how localgrad was built")

    bench = sub.add_parser(
        "bench", help="run a benchmark family (or all) and print its tables",
        description="Runs benchmarks/bench_<family>.py; arguments after the family name that bench does not "
        "know go to the script, e.g. `localgrad bench dfa --batches 128`.",
    )
    bench.add_argument("family", nargs="?", default="all", help="a family from --list, or all (default)")
    bench.add_argument("--list", action="store_true", help="list the benchmark families and exit")
    bench.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                       help="auto: cuda when localgrad has its CUDA kernels and a GPU is visible, else cpu")
    bench.add_argument("--json", metavar="FILE", help="write the rows and the environment here")
    bench.add_argument("--quick", action="store_true", help="tiny sizes, few repeats: a smoke run in seconds")
    bench.add_argument("--no-progress", action="store_true")

    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "bench":
        from localgrad import bench as bench_module

        if args.list:
            bench_module.print_list()
            return 0
        return bench_module.run(args.family, args.device, args.json, args.quick, not args.no_progress, extra)
    if args.command == "info":
        import localgrad

        print(json.dumps(localgrad.build_info(), indent=2))
        return 0
    from localgrad.experiments import demo as demo_module

    if args.mode == "meta":
        if args.task not in (*META_TASKS, "delayed"):
            parser.error(f"argument --task: meta mode's tasks are {', '.join(META_TASKS)}, got {args.task!r}")
        plot = "demo_meta_coefficients.png" if args.plot == "demo_accuracy.png" else args.plot or None
        demo_module.run_meta(None if args.task == "delayed" else (args.task,), args.seed, plot, not args.no_progress)
        return 0
    given = [r for r in args.rules.split(",") if r]
    default_rules = args.rules == ",".join(DEFAULT_RULES)
    if args.mode == "hebbian":
        rows = HEBBIAN_ROWS if default_rules else given
        unknown = [r for r in rows if r not in HEBBIAN_ROWS]
        if unknown:
            parser.error(f"argument --rules: unknown row(s) {', '.join(unknown)}; choose from {', '.join(HEBBIAN_ROWS)}")
        demo_module.run_hebbian(rows, args.dataset, args.hebbian_width, args.epochs, args.batch_size, args.seed,
                                args.device)
        return 0
    if args.mode == "online":
        from localgrad.experiments import online_tasks as tasks, spiking_task

        known = spiking_task.ROWS if args.task == "spiking" else tuple(tasks.rules())
    else:
        import localgrad

        known = tuple(localgrad.rules("static"))
    unknown = [r for r in given if r not in known]
    if not given or unknown:
        parser.error(f"argument --rules: unknown rule(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(known)}")
    if args.mode == "online" and args.task == "spiking":
        from localgrad.experiments import spiking_task

        rows = spiking_task.compare(
            rules=spiking_task.ROWS if default_rules else given,
            hidden=64 if args.hidden == [256, 256] else args.hidden[0],
            epochs=10 if args.epochs == 15 else args.epochs,
            adaptive=args.neuron == "alif",
            seed=args.seed,
            device=demo_module.resolve_device(args.device),
            progress=not args.no_progress,
        )
        print(spiking_task.format_rows(rows))
        return 0
    if args.mode == "online":
        hidden = 32 if args.hidden == [256, 256] else args.hidden[0]
        lr = 1e-2 if args.lr is None else args.lr
        rules = demo_module.ONLINE_RULES if default_rules else given
        demo_module.run_online(args.task, rules, hidden, args.iterations, 32, lr, args.seed, args.alpha)
        return 0
    rules = given
    if args.model == "strided" and default_rules:
        rules = ["backprop", "ldrl"]
    demo_module.run(
        rules=rules,
        dataset_name=args.dataset,
        hidden=args.hidden,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
        model_name=args.model,
        plot_path=args.plot or None,
        skip_refused=default_rules,  # the default rows on the CNN leave out the MLP-only rules, saying so
    )
    return 0
