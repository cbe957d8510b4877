"""The polyguide command line.

    polyguide demo [--out outputs] [--toy]    the main job: guided samples from the shipped shapes model
    polyguide explain "<guidance>"            what an expression evaluates, step by step
    polyguide fit --config recipe.yaml ...    train (LightningCLI)
    polyguide sample --checkpoint C --cond shape=circle --guidance "..."   sample, write media
    polyguide eval --checkpoint C --guidance "..."                         metrics of guided samples
    polyguide modalities                      the installed modality plugins
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from framework.cli.args import (
    MAX_N,
    MAX_SEED,
    MAX_STEPS,
    Parser,
    bounded_int,
    check_output_dir,
    non_empty,
    protect_dash_values,
)
from framework.core.errors import ArgumentError, UserError, one_line

__all__ = ["USER_ERRORS", "main"]

#: What the CLI reports in one line (exit 2): every user error (``CheckpointError`` included).
USER_ERRORS: tuple[type[BaseException], ...] = (UserError,)
COMMANDS = ("demo", "explain", "modalities", "sample", "eval", "export", "fit")
#: ``explain`` prints one line per step.
MAX_EXPLAIN_STEPS = 1_000


def _demo(args: argparse.Namespace) -> int:
    check_output_dir(args.out)
    progress = not args.no_progress and sys.stderr.isatty()
    if args.toy:
        from framework.toy.demo import run_demo, table

        rows = run_demo(args.out, n=args.n or 400, steps=args.steps or 40, seed=args.seed, progress=progress)
        print(table(rows))
        for name in ("guidance_demo.png", "summary.md", "summary.json"):
            print(f"wrote {args.out / name}")
        return 0
    from modalities.image.demo import CHECKPOINT
    from modalities.image.demo import run_demo as image_demo

    if not CHECKPOINT.is_file():
        raise ArgumentError(f"the demo's checkpoint {CHECKPOINT} is missing; train it with `polyguide fit "
                            f"--config recipes/image/shapes_flow.yaml` (see recipes/README.md), or run "
                            f"`polyguide demo --toy`")
    start = time.perf_counter()
    result = image_demo(args.out, per_request=args.n or 8, steps=args.steps or 30, seed=args.seed,
                        progress=progress)
    print(result["table"])
    for f in result["files"]:
        print(f"wrote {f}")
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from framework.guidance import Guider, parse
    from framework.guidance.expr import check_zero_directions
    from framework.guidance.ops.cost_grad import find_costs
    from framework.guidance.spaces import VPSpaces

    expr = parse(args.guidance)
    expr.check()
    check_zero_directions(expr)
    print(f"expression   {expr!r}")
    by_net: dict[str, list[str]] = {}
    for b in sorted(expr.branches(), key=repr):
        by_net.setdefault(b.network, []).append(repr(b))
    for net, names in by_net.items():
        print(f"network {net!r}: {len(names)} branch(es): {', '.join(names)}")
    for tau in (0.0, 0.5, 1.0):
        coefs = ", ".join(f"{k!r}: {v:+.4g}" for k, v in expr.coefficients(tau).items())
        print(f"τ={tau:<4g} coefficients {coefs}")
    networks = {b.network: (lambda *a, **k: None) for b in expr.branches()} or {"main": lambda *a: None}
    networks.setdefault(expr.reference().network, lambda *a, **k: None)
    guider = Guider(expr, networks, native_space="eps", converter=VPSpaces(lambda t: (t, t)))
    state = guider.new_state()
    terms = find_costs(expr)
    for c in terms:
        src = c.at if c.at is not None else expr.reference()
        how = ("back-propagated through the network to x_t: 1 backward pass over that branch's rows "
               "per step, its forward under autograd") if c.through_model else \
            "w.r.t. x̂0 itself: no backward pass through the network"
        print(f"cost term    {c!r}: direction −∇ cost(x̂0) added in x0 space, x̂0 of {src!r}; gradient "
              f"{how}; 1 cost evaluation per step where its weight is non-zero")
    print(f"plan over {args.steps} steps (static: adaptive switches and zero-init depend on the run):")
    total = backward = evals = 0
    for i in range(args.steps):
        tau = i / max(1, args.steps - 1)
        plan = guider.plan(tau, state)
        nfe = sum(len(v) for v in plan.values())
        total += nfe
        extra = ""
        if terms:
            costs = guider.plan_costs(tau, state)
            graph = {b for _, b, through in costs if through}
            n_back = sum(through for *_, through in costs)
            backward, evals = backward + n_back, evals + len(costs)
            forwards = sum(len({b in graph for b in bs}) for bs in plan.values())
            extra = f"backward {n_back}  cost evals {len(costs)}  "
        else:
            forwards = len(plan)
        print(f"  step {i:>3}  τ={tau:.2f}  NFE {nfe}  forwards {forwards}  {extra}"
              f"{'; '.join(f'{n}: ' + ', '.join(map(repr, bs)) for n, bs in plan.items())}")
    print(f"total NFE {total} ({total / args.steps:.2f} per step)"
          + (f", backward passes {backward}, cost evaluations {evals}" if terms else ""))
    subsets = sorted(expr.required_subsets(), key=lambda s: (len(s), sorted(s)))
    print("training must cover the condition subsets: "
          + "; ".join("{" + ", ".join(sorted(s)) + "}" if s else "∅ (unconditional)" for s in subsets))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="polyguide", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command")
    d = sub.add_parser("demo", help="the main job: guided sampling from the shipped shapes checkpoint",
                       description="Sample the shipped shapes flow checkpoint under several guidance "
                                   "expressions: a labelled PNG grid per expression and a summary table "
                                   "(accuracy, Fréchet distance, NFE, seconds). --toy: an analytic 2-D toy.")
    d.add_argument("--out", type=Path, default=Path("outputs"), help="output folder (default: outputs)")
    d.add_argument("--n", type=bounded_int(1, MAX_N), default=None,
                   help="samples per request (image; default 8) or per expression (toy; default 400)")
    d.add_argument("--steps", type=bounded_int(1, MAX_STEPS), default=None,
                   help=f"sampling steps (default 30; toy 40; at most {MAX_STEPS:,})")
    d.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=0)
    d.add_argument("--toy", action="store_true", help="the analytic toy instead (no checkpoint needed)")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.set_defaults(run=_demo)
    e = sub.add_parser("explain", help="show the branches, coefficients and NFE plan of a guidance",
                       description="Parse a guidance expression and show what it evaluates.")
    e.add_argument("guidance", type=non_empty,
                   help='e.g. "uncond + 4*(cond(shape) - uncond) + 3*(cond(color) - uncond)"')
    e.add_argument("--steps", type=bounded_int(1, MAX_EXPLAIN_STEPS), default=10,
                   help=f"sampling steps to plan (at most {MAX_EXPLAIN_STEPS:,}: one line each)")
    e.set_defaults(run=_explain)
    from framework.cli.commands import add_commands

    add_commands(sub)
    sub.add_parser("fit", help="train a recipe: polyguide fit --config recipes/<modality>/<name>.yaml",
                   add_help=False)
    return p


def _report(command: str | None, error: BaseException) -> int:
    """A user error: one line on stderr, exit code 2."""
    where = f"polyguide {command}" if command else "polyguide"
    print(f"{where}: error: {one_line(error)}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``polyguide`` console script; returns the exit code.

    A :class:`~framework.core.errors.UserError` (bad argument, file, condition, guidance...) is reported
    in one line, ``polyguide <command>: error: <message>``, with exit code 2; any other exception is
    a bug and keeps its traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    try:
        if command == "fit":  # everything after `fit` belongs to LightningCLI
            from framework.cli.fit import fit_main

            return fit_main(argv)
        parser = _parser()
        args = parser.parse_args(protect_dash_values(argv, parser))
        if args.command is None:
            parser.print_help()
            return 0
        return args.run(args)
    except USER_ERRORS as e:
        return _report(command, e)
    except KeyboardInterrupt:
        print(f"polyguide{' ' + command if command else ''}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
