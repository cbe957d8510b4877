"""The polyguide command line.

The commands and what each does are listed once, in the parser's description
(``polyguide --help``, :mod:`framework.cli.parser`).

The parser (:mod:`framework.cli.parser`) imports nothing heavy, and each command imports what it
needs when it runs; ``sample``, ``eval``, ``explain`` and ``export`` never import Lightning.
"""

from __future__ import annotations

import argparse
import sys
import time

from framework.cli.args import check_output_dir, parse_guidance, protect_dash_values, resolve_device
from framework.cli.parser import COMMANDS, build_parser
from framework.core.errors import ArgumentError, UserError, one_line

__all__ = ["USER_ERRORS", "main"]

#: What the CLI reports in one line (exit 2): every user error (``CheckpointError`` included).
USER_ERRORS: tuple[type[BaseException], ...] = (UserError,)


def _demo(args: argparse.Namespace) -> int:
    check_output_dir(args.out)
    progress = not args.no_progress and sys.stderr.isatty()
    if args.toy:
        if args.device is not None:
            raise ArgumentError("--device applies to the shipped model; the --toy demo is analytic and runs "
                                "on the CPU")
        from framework.toy.demo import run_demo, table

        out = args.out / "toy"  # its own folder: the main demo's summary files stay untouched
        rows = run_demo(out, n=args.n or 400, steps=args.steps or 40, seed=args.seed, progress=progress)
        print(table(rows))
        for name in ("guidance_demo.png", "summary.md", "summary.json"):
            print(f"wrote {out / name}")
        return 0
    device = resolve_device(args.device)
    from framework.core import plugins

    start = time.perf_counter()  # the image modality's demo, reached through the registry
    result = plugins.get("image").demo(args.out, per_request=args.n or 8, steps=args.steps or 30,
                                       seed=args.seed, progress=progress, device=device)
    print(result["table"])
    for f in result["files"]:
        print(f"wrote {f}")
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from framework.guidance import Guider
    from framework.guidance.ops.cost_grad import find_costs
    from framework.guidance.spaces import VPSpaces

    if args.guidance is None and args.checkpoint is None:
        raise ArgumentError("give a guidance expression, a --checkpoint, or both")
    if args.checkpoint is not None:
        _explain_dropout(args.checkpoint, args.guidance)
        if args.guidance is None:
            return 0
    expr = parse_guidance(args.guidance)
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
    if args.pretrained is not None:
        from framework.pretrained.cli import explain

        explain(args)
    return 0


def _explain_dropout(path, guidance: str | None) -> None:
    """Print the condition dropout ``path`` was trained with, and whether it covers ``guidance``."""
    import warnings

    from framework.core.conditions import ConditionError
    from framework.core.dropout import DropoutSpec
    from framework.core.shipped import resolve
    from framework.model.checkpoints import build_model, load_checkpoint
    from framework.model.generative import GenerativeModel

    ckpt = load_checkpoint(resolve(path))
    model = build_model(ckpt, path, GenerativeModel)  # older checkpoints did not store the record
    print(f"checkpoint   {path}")
    print(DropoutSpec.table(ckpt.get("dropout") or model.dropout.record()))
    if guidance is not None:
        from framework.guidance import parse

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                model.dropout.check(parse(guidance), model.specs, strict=True)
                print("trained for it: yes, the dropout trains every condition subset it evaluates")
            except ConditionError as e:
                print(f"trained for it: NO: {e}")


def _parser() -> argparse.ArgumentParser:
    return build_parser()


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
