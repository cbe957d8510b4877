"""``polyguide modalities``, ``polyguide sample`` and ``polyguide eval``: checkpoints → media."""

from __future__ import annotations

import argparse
import inspect
import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch

from framework.cli.args import (
    MAX_SEED,
    check_cond_syntax,
    check_input_file,
    check_output_dir,
    check_output_file,
    fresh_seed,
    parse_guidance,
    resolve_device,
)
from framework.cli.outputs import MANIFEST, claim, complete
from framework.cli.stream import stream_samples, stream_text
from framework.core import plugins
from framework.core.atomic import atomic_save, atomic_write
from framework.core.conditions import ConditionError, ConditionSpec
from framework.core.errors import ArgumentError, OutputError
from framework.evaluation import evaluate, format_table, sample_checked, scored_conditions

__all__ = ["parse_conditions", "stream_text"]


def parse_conditions(pairs: list[str], specs: dict[str, ConditionSpec]) -> dict[str, Any]:
    """``["shape=circle", "color=red"]`` → raw values, with errors naming the valid choices.

    A condition given twice is an error (the last one would silently win).
    """
    check_cond_syntax(pairs)
    raw: dict[str, Any] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in specs:
            valid = ", ".join(f"{n} ({'|'.join(s.labels) if s.labels else s.kind})" for n, s in specs.items())
            raise ConditionError(f"unknown condition {name!r}; this model has: {valid}")
        spec = specs[name]
        if spec.kind == "categorical" and value not in spec.labels:
            raise ConditionError(f"unknown value {value!r} for condition {name!r}; valid: "
                                 f"{', '.join(spec.labels)}")
        if spec.kind == "scalar":  # e.g. a distilled student's guidance weight: --cond w=4
            raw[name] = spec.encode(value, 1)[0].item()
            continue
        if spec.kind != "categorical" and spec.encoder is None:
            raise ConditionError(f"condition {name!r} is a {spec.kind} and has no encoder for text values")
        raw[name] = value
    return raw


def _load(path: Path, what: str = "checkpoint"):
    """Load a model for sampling (a :class:`~framework.model.generative.GenerativeModel`: no Lightning);
    a bad file is a ``CheckpointError`` (a user error) naming it."""
    from framework.model.checkpoints import load_model
    from framework.model.generative import GenerativeModel

    check_input_file(path, what)
    return load_model(str(path), cls=GenerativeModel)


#: samples drawn in one batch by ``polyguide sample``; a larger ``--n`` is sampled batch by batch, so
#: the network's memory stays that of this many samples (results are kept on the CPU)
MAX_BATCH = 256


def _sample_in_batches(model, raw, guidance, n: int, seed: int, **kwargs):
    """:func:`~framework.evaluation.sample_checked` for ``n`` samples, at most :data:`MAX_BATCH` at a time.

    Batch ``k`` uses seed ``seed + 1_000_003·k`` (batch 0 is exactly the unbatched run of ``n ≤
    MAX_BATCH``). Returns one :class:`~framework.generators.SampleOutput` with the samples and media
    of all batches concatenated on the CPU; its ``stats`` are the first batch's (each batch takes
    the same steps), its ``seconds`` the total.
    """
    from framework.generators import SampleOutput

    outs = []
    for k, start in enumerate(range(0, n, MAX_BATCH)):
        out = sample_checked(model, raw, guidance, n=min(MAX_BATCH, n - start),
                              seed=(seed + 1_000_003 * k) % MAX_SEED, **kwargs)
        outs.append(SampleOutput(out.samples.cpu(), out.stats, out.seconds,
                                 None if out.media is None else out.media.cpu()))
    if len(outs) == 1:
        return outs[0]
    media = None if outs[0].media is None else torch.cat([o.media for o in outs])
    samples = torch.cat([o.samples for o in outs])
    return SampleOutput(samples, outs[0].stats, sum(o.seconds for o in outs), media)


def _sample_length(args: argparse.Namespace, model, raw, expr, n: int, seed: int, steps: int, weak):
    """``--seconds`` / ``--fps``: the modality plugin's ``sample_length`` hook (motion), else a one-line
    error; returns a :class:`~framework.generators.SampleOutput` whose ``media`` is the clip."""
    hook = getattr(model.plugin, "sample_length", None)
    if hook is None or args.prompt is not None or args.max_tokens is not None:
        raise ArgumentError(f"--seconds/--fps: the {model.hparams.get('modality') or 'untyped'} model "
                            f"{args.checkpoint} generates a fixed length (motion models take them)")
    if n > MAX_BATCH:
        raise ArgumentError(f"--n {n} with --seconds/--fps: at most {MAX_BATCH} clips a run")
    return hook(model, raw, expr, n=n, seed=seed, steps=steps, weak=weak, seconds=args.seconds,
                fps=args.fps, progress=not args.no_progress)


def _check_model_args(model, args: argparse.Namespace, expr, weak) -> None:
    """What can only be checked once the model is known, still before sampling. (The guidance
    against the conditions given is checked once, by the sampler, before any work.)"""
    expr = expr if expr is not None else (model.guidance[0] if model.guidance else None)
    uses_weak = expr is not None and any(b.network == "weak" for b in expr.branches())
    if uses_weak and weak is None:
        raise ArgumentError("the guidance evaluates branches .on(weak): give the weak model with --weak")
    if weak is not None and not uses_weak:
        raise ArgumentError("--weak is given but the guidance has no .on(weak) branch to use it")
    _check_steps(model, args.steps)


def _check_steps(model, steps: int | None) -> None:
    """Token families: an autoregressive model takes no more steps than its length; a masked model
    may take more steps than positions (a note says the extra ones cost no evaluation)."""
    family, length = model.hparams.get("family"), model.shape[-1]
    if family == "autoregressive" and len(model.shape) == 2 and steps not in (None, length):
        raise ArgumentError(f"--steps {steps}: this autoregressive model generates {model.shape[0]} "
                            f"codebooks × {length} frames, which its codec decodes as a whole; "
                            f"use --steps {length} or leave it out")
    if steps is None or steps <= length:
        return
    if family == "autoregressive":
        raise ArgumentError(f"--steps {steps}: this autoregressive model generates at most {length} tokens "
                            f"per sample (use --max-tokens to stream longer text)")
    if family == "masked":  # allowed: steps that commit no token reuse the last evaluation (free)
        print(f"note: --steps {steps} on a masked model of {length} positions: the steps that commit no "
              f"token reuse the previous network evaluation (no extra NFE)")


def _steps_or_default(model, steps: int | None) -> int:
    """``--steps`` if given, else :func:`~framework.model.generative.default_steps` (an autoregressive
    model's whole length). A step count that samples only part of an autoregressive model's length
    is noted on stdout, since the decoded samples are then shorter than the model's."""
    from framework.model.generative import default_steps

    family, length = model.hparams.get("family"), model.shape[-1]
    if steps is None:
        return default_steps(family, model.shape)
    if family == "autoregressive" and steps != length:
        print(f"note: --steps {steps} samples {steps} of this autoregressive model's {length} tokens per "
              f"sample (leave --steps out for all {length})")  # stdout: stderr is for errors alone
    return steps


def _load_for(args: argparse.Namespace, path: Path, what: str = "checkpoint"):
    """:func:`_load` on ``args.device``."""
    return _load(path, what).to(resolve_device(args.device))


def _sample(args: argparse.Namespace) -> int:
    if args.pretrained is not None:
        from framework.pretrained.cli import sample

        return sample(args)
    if args.checkpoint is None:
        raise ArgumentError("give --checkpoint (a polyguide model) or --pretrained (a pipeline folder "
                            "or hub id)")
    streaming = args.prompt is not None or args.max_tokens is not None
    if streaming and args.steps is not None:
        raise ArgumentError("--steps does not apply when streaming text with --prompt/--max-tokens "
                            "(its length is --max-tokens)")
    if args.keep_going and not streaming:
        raise ArgumentError("--continue applies when streaming text: give --prompt or --max-tokens")
    if args.min_tokens is not None and not streaming:
        raise ArgumentError("--min-tokens applies when streaming text: give --prompt or --max-tokens")
    if args.min_tokens is not None and args.min_tokens > (args.max_tokens or 64):
        raise ArgumentError(f"--min-tokens {args.min_tokens} is more than --max-tokens "
                            f"({args.max_tokens or 64}): a speech cannot be that long")
    out_dir = (None if streaming and args.out is None else check_output_dir(args.out or Path("samples")))
    check_input_file(args.checkpoint, "checkpoint")
    if args.weak is not None:
        check_input_file(args.weak, "--weak checkpoint")
    check_cond_syntax(args.cond)
    expr = parse_guidance(args.guidance)  # the one parse: sampling takes the expression
    resolve_device(args.device)  # an unavailable device fails before loading anything
    seed = fresh_seed() if args.seed is None else args.seed
    model = _load_for(args, args.checkpoint)
    raw = parse_conditions(args.cond, model.specs)
    weak = _load_for(args, args.weak, "--weak checkpoint") if args.weak else None
    if weak is not None:
        from framework.model.checkpoints import check_compatible

        check_compatible(model, weak, str(args.checkpoint), str(args.weak))  # before any sampling
    _check_model_args(model, args, expr, weak)
    guidance_text = args.guidance or (repr(model.guidance[0]) + " (the checkpoint's)" if model.guidance
                                      else "cond(" + ", ".join(sorted(raw)) + ") (plain conditional)")
    used = f"guidance {guidance_text}; seed {seed}" + ("" if args.seed is not None else
                                                       f" (repeat with --seed {seed})")
    if streaming:
        code = stream_samples(args, model, raw, expr, weak, seed, out_dir)
        print(f"[{used}]")
        return code
    n, steps = args.n or 16, _steps_or_default(model, args.steps)
    if args.seconds is not None or args.fps is not None:  # a modality's own clip length / frame rate
        out = _sample_length(args, model, raw, expr, n, seed, steps, weak)
    else:
        out = _sample_in_batches(model, raw, expr, n, seed, steps=steps, weak=weak,
                                 progress=not args.no_progress)
    print(used)
    media = out.media.cpu() if out.media is not None else None
    modality = model.plugin  # the model's own, looked up once when it was built
    out_dir, note = claim(out_dir)  # this run's own folder: never mixed with another run's files
    if note:
        print(note)
    try:
        files, record = _write_samples(args, model, out, raw, media, modality, out_dir, n, steps, seed)
    except OSError as e:
        if isinstance(e, OutputError):
            raise
        raise OutputError(f"writing the samples to {out_dir} failed ({e.strerror or e}); its manifest.json "
                          f"marks the run incomplete") from None
    costs = f", {out.backward} backward passes, {out.cost_evals} cost evaluations" if out.cost_evals else ""
    print(f"{n} samples, {len(out.stats)} steps, NFE {out.nfe} "
          f"({out.nfe / max(1, len(out.stats)):.2f}/step){costs}, {out.seconds:.1f} s")
    for f in [*files, record, out_dir / MANIFEST]:
        print(f"wrote {f}")
    return 0


def _write_samples(args: argparse.Namespace, model, out, raw: dict[str, Any], media, modality, out_dir: Path,
                   n: int, steps: int, seed: int) -> tuple[list[Path], Path]:
    """The modality's files, then ``samples.pt``, then the complete manifest (all atomic)."""
    title = ", ".join(args.cond) + (f" | {args.guidance}" if args.guidance else "")
    extra = {}
    if modality is not None and "conditions" in inspect.signature(modality.write).parameters:
        extra["conditions"] = model.conditions(raw, n)  # e.g. motion draws the requested path
    if getattr(args, "fps", None) is not None:  # checked by the plugin's sample_length
        extra["fps"] = int(args.fps)
    files = (modality.write(media, out_dir, title=title, **extra) if modality is not None
             else plugins.Modality().write(out.samples.cpu(), out_dir))
    record = out_dir / "samples.pt"
    if record in files:  # a writer that took the CLI's file name would be overwritten silently
        raise OutputError(f"the {model.hparams.get('modality')} writer wrote {record}, the file where "
                          f"polyguide sample keeps the representation; the plugin must use another name")
    atomic_save(record, lambda f: torch.save({"samples": out.samples.cpu(), "conditions": raw,
                                              "guidance": args.guidance, "seed": seed, "steps": steps}, f))
    complete(out_dir, [*files, record], command="sample", checkpoint=str(args.checkpoint), n=n, steps=steps,
             seed=seed, guidance=args.guidance, conditions=args.cond)
    return files, record


def _check_eval_args(model, args: argparse.Namespace, guidances: dict[str, Any]) -> None:
    """What eval can check from the model alone (before its judge is built)."""
    if not model.hparams.get("modality"):
        raise ArgumentError(f"checkpoint {args.checkpoint} has no modality, so there is no judge to "
                            f"score its samples (eval needs a modality plugin's metrics)")
    for name in args.conditions or []:
        if name not in model.specs:
            raise ConditionError(f"unknown condition {name!r}; this model has {sorted(model.specs)}")
    if args.conditions is not None:  # a guidance on a condition not asked for fails before the judge is built
        _check_guidances_given(model, guidances, args.conditions)
    _check_steps(model, args.steps)
    for text, expr in guidances.items():
        if expr is not None and any(b.network != "main" for b in expr.branches()):
            raise ArgumentError(f"eval samples one model; the guidance {text!r} needs another network "
                                f"(.on(...)); use polyguide sample --weak")


def _eval_conditions(model, judge, args: argparse.Namespace, guidances: dict[str, Any]) -> list[str]:
    """The conditions eval requests: ``--conditions``, or every one the judge scores; each other
    condition is named in a note (never dropped silently). The guidances are checked against them."""
    scored, unscored = scored_conditions(model.specs, judge, args.conditions)
    for name, why in unscored.items():
        print(f"note: condition {name!r} is not scored: {why}")
    _check_guidances_given(model, guidances, scored)
    return scored


def _check_guidances_given(model, guidances: dict[str, Any], given: Collection[str]) -> None:
    """Each guidance uses only conditions in ``given`` (the requests eval will draw)."""
    from framework.core.conditions import Conditions
    from framework.guidance.given import check_given

    present = {k: torch.tensor([k in given]) for k in model.specs}  # check_given reads presence only
    probe = Conditions({k: torch.zeros(1) for k in model.specs}, present)
    for expr in guidances.values():
        if expr is not None:
            check_given(expr, probe)


def _eval(args: argparse.Namespace) -> int:
    check_input_file(args.checkpoint, "checkpoint")
    if len(set(args.guidance)) != len(args.guidance):
        raise ArgumentError("the same --guidance is given twice")
    guidances = {g: parse_guidance(g) for g in args.guidance} or {"default": None}  # parsed once
    if args.conditions is not None and len(set(args.conditions)) != len(args.conditions):
        raise ArgumentError(f"--conditions names a condition twice: {' '.join(args.conditions)}")
    if args.out is not None:
        check_output_dir(args.out)
    if args.cache is not None:
        check_output_dir(args.cache, "--cache folder")
    resolve_device(args.device)
    model = _load_for(args, args.checkpoint)
    _check_eval_args(model, args, guidances)
    steps = _steps_or_default(model, args.steps)
    modality = model.plugin
    cache = args.cache or plugins.judge_cache(modality)  # validation's judge
    judge = modality.judge(model.specs, model.codec, cache)
    names = _eval_conditions(model, judge, args, guidances)
    rows = evaluate(model, guidances, args.n, steps, args.seed, cache, names,
                    progress=not args.no_progress, judge=judge)
    table = format_table(rows)
    print(table)
    if args.out:
        out_dir, note = claim(args.out)  # as sample: never mixed with another run's files
        if note:
            print(note)
        text = json.dumps(rows, indent=2)
        files = [atomic_write(out_dir / "eval.json", lambda tmp: tmp.write_text(text)),
                 atomic_write(out_dir / "eval.md", lambda tmp: tmp.write_text(table))]
        complete(out_dir, files, command="eval", checkpoint=str(args.checkpoint), n=args.n, seed=args.seed,
                 guidance=args.guidance, conditions=args.conditions)
        for f in [*files, out_dir / MANIFEST]:
            print(f"wrote {f}")
    return 0


def is_polyguide_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a torch checkpoint holding ``state_dict`` and ``hyper_parameters``.

    Only the archive's table of contents and the names in its pickle are read; nothing is
    unpickled, so this runs no code from the file.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            pkl = next((n for n in z.namelist() if n.endswith("/data.pkl")), None)
            data = z.read(pkl) if pkl else b""
    except (OSError, zipfile.BadZipFile, KeyError):
        return False
    return b"state_dict" in data and b"hyper_parameters" in data


def _export(args: argparse.Namespace) -> int:
    from framework.model.checkpoints import export

    check_input_file(args.checkpoint, "checkpoint")
    dest = check_output_file(args.dest, "export destination")
    same = dest.exists() and dest.resolve() == args.checkpoint.resolve()
    if dest.exists() and not same and not args.force and not is_polyguide_checkpoint(dest):
        raise OutputError(f"export destination {dest} exists and is not a polyguide checkpoint; "
                          f"refusing to overwrite it (give --force to replace it)")
    path = export(args.checkpoint, dest)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
