"""``polyguide sample --pretrained PATH_OR_ID`` and ``polyguide explain ... --pretrained``."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from framework.cli.args import check_output_dir, fresh_seed, resolve_device
from framework.core.errors import ArgumentError, NonFiniteError, one_line

__all__ = ["explain", "parse_pairs", "sample"]

#: ``polyguide sample`` options that belong to polyguide checkpoints only
_CHECKPOINT_ONLY = {"weak": "--weak", "prompt": "--prompt", "max_tokens": "--max-tokens",
                    "keep_going": "--continue"}


def parse_pairs(pairs: list[str]) -> dict[str, str]:
    """``["text=a cat", "image=in.png"]`` → ``{"text": "a cat", "image": "in.png"}`` (each name once)."""
    from framework.cli.args import check_cond_syntax as _check_cond_syntax

    _check_cond_syntax(pairs)
    return dict(pair.partition("=")[::2] for pair in pairs)


def sample(args: argparse.Namespace) -> int:
    """Sample a pipeline folder / hub id with any guidance; write PNGs or WAVs and ``samples.pt``."""
    from framework import pretrained
    from framework.cli.args import parse_guidance as _parse_guidance
    from framework.core.atomic import atomic_save

    if args.checkpoint is not None:
        raise ArgumentError("give --checkpoint (a polyguide model) or --pretrained (a pipeline), not both")
    for key, flag in _CHECKPOINT_ONLY.items():
        if getattr(args, key, None):
            raise ArgumentError(f"{flag} applies to polyguide checkpoints, not to --pretrained pipelines")
    out_dir = check_output_dir(args.out or Path("samples"))
    raw = parse_pairs(args.cond)
    _parse_guidance(args.guidance)
    device = resolve_device(args.device)
    seed = fresh_seed() if args.seed is None else args.seed
    model = pretrained.load(args.pretrained, device=None if device.type == "cpu" else device)
    model.check_raw(raw)
    expr = model.guidance(args.guidance)
    n = args.n or 4
    try:
        out = model.sample(raw, expr, n=n, steps=args.steps, seed=seed, progress=not args.no_progress)
    except FloatingPointError as e:
        raise NonFiniteError(f"sampling produced non-finite values; nothing was written. "
                             f"{one_line(e)}") from e
    if not bool(torch.isfinite(out.media).all()):
        raise NonFiniteError("sampling produced non-finite media; nothing was written")
    print(f"{model.pipeline_class}: guidance {expr!r}; seed {seed}"
          + ("" if args.seed is not None else f" (repeat with --seed {seed})"))
    title = ", ".join(args.cond) + f" | {expr!r}"
    files = model.write(out.media.cpu(), out_dir, title=title)
    record = atomic_save(out_dir / "samples.pt", lambda f: torch.save(
        {"samples": out.samples.cpu(), "conditions": raw, "guidance": repr(expr), "seed": seed,
         "steps": len(out.stats), "pretrained": str(args.pretrained)}, f))
    steps = len(out.stats)
    print(f"{n} samples, {steps} steps, NFE {out.nfe} ({out.nfe / max(1, steps):.2f}/step), "
          f"{out.seconds:.1f} s")
    for f in [*files, record]:
        print(f"wrote {f}")
    return 0


def explain(args: argparse.Namespace) -> None:
    """Print the pipeline's passes for ``args.guidance`` over ``args.steps`` steps."""
    from framework import pretrained

    print(pretrained.load(args.pretrained).explain(args.guidance, args.steps))
