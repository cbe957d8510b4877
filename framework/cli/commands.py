"""``polyguide modalities``, ``polyguide sample`` and ``polyguide eval``: checkpoints → media."""

from __future__ import annotations

import argparse
import inspect
import json
import time
from pathlib import Path
from typing import Any

import torch

from framework.cli.args import (
    MAX_N,
    MAX_SEED,
    MAX_STEPS,
    MAX_TOKENS,
    bounded_int,
    check_input_file,
    check_output_dir,
    check_output_file,
    non_empty,
)
from framework.core import plugins
from framework.core.conditions import ConditionError, ConditionSpec
from framework.core.errors import ArgumentError, NonFiniteError, OutputError, one_line

__all__ = ["add_commands"]


def _modalities(args: argparse.Namespace) -> int:
    names = plugins.available()
    if not names:
        print(f"no modality plugins installed (entry-point group {plugins.GROUP!r})")
        return 0
    for name in names:
        try:
            m = plugins.get(name)
        except plugins.PluginError as e:
            print(f"{name}: BROKEN — {e}")
            continue
        print(f"{name}: {m.description}")
        print(f"  representations: {', '.join(m.representations) or '—'}")
        data = ", ".join(f"{k} ({v.__module__}.{v.__name__})" for k, v in m.datamodules.items())
        print(f"  data modules:    {data or '—'}")
        for cname, desc in m.conditions.items():
            print(f"  condition {cname:<10} {desc}")
        for r in m.recipes():
            print(f"  recipe  {r.relative_to(Path.cwd()) if r.is_relative_to(Path.cwd()) else r}")
    return 0


def parse_conditions(pairs: list[str], specs: dict[str, ConditionSpec]) -> dict[str, Any]:
    """``["shape=circle", "color=red"]`` → raw values, with errors naming the valid choices.

    A condition given twice is an error (the last one would silently win).
    """
    _check_cond_syntax(pairs)
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
        if spec.kind != "categorical" and spec.encoder is None:
            raise ConditionError(f"condition {name!r} is a {spec.kind} and has no encoder for text values")
        raw[name] = value
    return raw


def _check_cond_syntax(pairs: list[str]) -> None:
    """``--cond`` values are ``name=value`` and name each condition once (checked before loading)."""
    seen: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConditionError(f"--cond takes name=value, got {pair!r}")
        if name in seen:
            raise ConditionError(f"condition {name!r} is given twice (--cond {seen[name]} and "
                                 f"--cond {pair}); give each condition once")
        seen[name] = pair


def _load(path: Path, what: str = "checkpoint"):
    """Load a model for the CLI; a bad file is a ``CheckpointError`` (a user error) naming it."""
    from framework.training.module import load

    check_input_file(path, what)
    return load(str(path))


def _parse_guidance(text: str | None) -> None:
    """Parse (and check) guidance text before any model is loaded: syntax errors come first."""
    if text is None:
        return
    from framework.guidance import parse
    from framework.guidance.expr import check_zero_directions

    expr = parse(text)
    expr.check()
    check_zero_directions(expr)


def _sample_checked(model, conditions, guidance, **kwargs):
    """``model.sample`` whose non-finite result is a one-line :class:`NonFiniteError` (nothing is
    written): the guided prediction (checked every step) or the decoded media."""
    try:
        out = model.sample(conditions, guidance, **kwargs)
    except FloatingPointError as e:
        raise NonFiniteError(f"sampling produced non-finite values; nothing was written. {one_line(e)}. "
                             f"A smaller guidance weight usually helps") from e
    for what, t in (("samples", out.samples), ("decoded media", out.media)):
        if t is not None and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise NonFiniteError(f"sampling produced non-finite {what} "
                                 f"({int((~torch.isfinite(t)).sum())} values); nothing was written")
    return out


def stream_text(model, raw: dict[str, Any], guidance: str | None, prompt: str | None, max_tokens: int,
                seed: int, weak=None, emit=print) -> dict[str, Any]:
    """Guided autoregressive text, streamed to ``emit`` as it is sampled (one sample).

    The model sees at most its trained length ``L`` of tokens; longer generations continue from
    the last ``L/2`` tokens as a new prompt (a sliding window, re-prefilled). Stops at the end
    token or after ``max_tokens``. Needs a text codec (``prompt``, ``decode_text``, ``eos_id``).
    """
    codec = model.codec
    if codec is None or not hasattr(codec, "decode_text"):
        raise ArgumentError("--prompt and --max-tokens stream text: they need a text model "
                            f"(this one is {_kind(model)})")
    if model.hparams.get("family") != "autoregressive":
        raise ArgumentError("--prompt and --max-tokens stream text token by token: they need an "
                            f"autoregressive model (this one is {_kind(model)})")
    L = codec.shape[0]
    try:
        context = codec.prompt(prompt, 1) if prompt else torch.zeros(1, 0, dtype=torch.long)
    except ValueError as e:  # e.g. longer than the model's context
        raise ArgumentError(f"--prompt does not fit this model: {one_line(e)}") from e
    new: list[int] = []
    shown, nfe, start, steps = "", 0, time.perf_counter(), 0
    if prompt:
        emit(prompt, end="", flush=True)

    def show(i: int, x: torch.Tensor, out) -> None:
        nonlocal shown
        text = codec.decode_text(torch.tensor([new + x[0, 1 + context.shape[1]:].tolist()]))[0]
        # a token may end inside a multi-byte character (decoded as U+FFFD until completed)
        if text.startswith(shown) and not text.endswith("\ufffd"):
            emit(text[len(shown):], end="", flush=True)
            shown = text

    while len(new) < max_tokens:
        budget = min(max_tokens - len(new), L - context.shape[1])
        res = model.sample(raw, guidance, n=1, steps=budget, seed=seed + steps, weak=weak,
                           init=context if context.shape[1] else None, callback=show)
        nfe, steps = nfe + res.nfe, steps + len(res.stats)
        chunk = res.samples[0].tolist()
        if codec.eos_id in chunk:
            new += chunk[:chunk.index(codec.eos_id)]
            break
        new += chunk
        context = torch.tensor([(context[0].tolist() + chunk)[-(L // 2):]])
    seconds = time.perf_counter() - start
    final = codec.decode_text(torch.tensor([new]))[0] if new else ""
    emit(final[len(shown):] if final.startswith(shown) else "\n" + final)  # whatever is still unshown
    return {"text": (prompt or "") + final, "tokens": len(new), "nfe": nfe, "steps": steps,
            "seconds": seconds, "tokens_per_s": len(new) / max(seconds, 1e-9)}


def _kind(model) -> str:
    modality = model.hparams.get("modality") or "no modality"
    return f"a {model.hparams.get('family', '?')} model of {modality}"


def _check_model_args(model, args: argparse.Namespace, raw: dict[str, Any], weak) -> None:
    """What can only be checked once the model is known, still before sampling."""
    from framework.core.conditions import Conditions
    from framework.guidance import parse
    from framework.guidance.given import check_given

    expr = parse(args.guidance) if args.guidance is not None else (
        model.guidance[0] if model.guidance else None)
    uses_weak = expr is not None and any(b.network == "weak" for b in expr.branches())
    if uses_weak and weak is None:
        raise ArgumentError("the guidance evaluates branches .on(weak): give the weak model with --weak")
    if weak is not None and not uses_weak:
        raise ArgumentError("--weak is given but the guidance has no .on(weak) branch to use it")
    if args.guidance is not None:
        check_given(expr, Conditions.from_raw(model.specs, raw, 1))
    _check_steps(model, args.steps)


def _check_steps(model, steps: int | None) -> None:
    """Token families: no more steps than positions (autoregressive: the model's length; masked:
    the extra steps would commit no token and only repeat evaluations)."""
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
    if family == "masked":
        raise ArgumentError(f"--steps {steps}: this masked model has {length} positions; more steps than "
                            f"positions only repeat evaluations that commit no token")


def _steps_or_default(model, steps: int | None) -> int:
    """``--steps`` if given, else 30, or the number of positions of a shorter token model."""
    if steps is not None:
        return steps
    tokens = model.hparams.get("family") in ("autoregressive", "masked")
    if tokens and model.hparams.get("family") == "autoregressive" and len(model.shape) == 2:
        return model.shape[-1]  # codebooks × frames: the codec decodes whole clips
    return min(30, model.shape[-1]) if tokens else 30


def _sample(args: argparse.Namespace) -> int:
    streaming = args.prompt is not None or args.max_tokens is not None
    for flag, value in (("--n", args.n), ("--out", args.out), ("--steps", args.steps)):
        if streaming and value is not None:
            raise ArgumentError(f"{flag} does not apply when streaming text with --prompt/--max-tokens "
                                f"(one sample, printed; its length is --max-tokens)")
    out_dir = None if streaming else check_output_dir(args.out or Path("samples"))
    check_input_file(args.checkpoint, "checkpoint")
    if args.weak is not None:
        check_input_file(args.weak, "--weak checkpoint")
    _check_cond_syntax(args.cond)
    _parse_guidance(args.guidance)
    model = _load(args.checkpoint)
    raw = parse_conditions(args.cond, model.specs)
    weak = _load(args.weak, "--weak checkpoint") if args.weak else None
    if weak is not None:
        from framework.core.checkpoints import check_compatible

        check_compatible(model, weak, str(args.checkpoint), str(args.weak))  # before any sampling
    _check_model_args(model, args, raw, weak)
    if streaming:
        try:
            r = stream_text(model, raw, args.guidance, args.prompt, args.max_tokens or 64, args.seed, weak)
        except FloatingPointError as e:
            raise NonFiniteError(f"sampling produced non-finite logits: {one_line(e)}") from e
        print(f"[{r['tokens']} tokens in {r['seconds']:.1f} s: {r['tokens_per_s']:.0f} tokens/s, "
              f"NFE {r['nfe']} over {r['steps']} steps]")
        return 0
    n, steps = args.n or 16, _steps_or_default(model, args.steps)
    out = _sample_checked(model, raw, args.guidance, n=n, steps=steps, seed=args.seed, weak=weak,
                          progress=not args.no_progress)
    modality = plugins.get(model.hparams.modality) if model.hparams.get("modality") else None
    args.out = out_dir
    args.out.mkdir(parents=True, exist_ok=True)
    title = ", ".join(args.cond) + (f" | {args.guidance}" if args.guidance else "")
    extra = {}
    if modality is not None and "conditions" in inspect.signature(modality.write).parameters:
        extra["conditions"] = model.conditions(raw, args.n)  # e.g. motion draws the requested path
    files = (modality.write(out.media, args.out, title=title, **extra) if modality is not None
             else plugins.Modality().write(out.samples, args.out))
    torch.save({"samples": out.samples.cpu(), "conditions": raw, "guidance": args.guidance},
               args.out / "samples.pt")
    costs = f", {out.backward} backward passes, {out.cost_evals} cost evaluations" if out.cost_evals else ""
    print(f"{n} samples, {len(out.stats)} steps, NFE {out.nfe} "
          f"({out.nfe / max(1, len(out.stats)):.2f}/step){costs}, {out.seconds:.1f} s")
    for f in [*files, args.out / "samples.pt"]:
        print(f"wrote {f}")
    return 0


def random_requests(specs: dict[str, ConditionSpec], names: list[str], n: int,
                    seed: int) -> dict[str, torch.Tensor]:
    """``n`` uniformly drawn labels for each categorical condition in ``names``."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randint(len(specs[k].labels), (n,), generator=g) for k in names}


def score_guidance(model, judge, conditions, requested: dict[str, torch.Tensor], label: str,
                   guidance: str | None, steps: int, seed: int, weak=None, progress: bool = False):
    """Sample a :class:`~framework.core.conditions.Conditions` batch of ``B`` under one guidance and score
    the media with ``judge`` against ``requested`` labels (``[B]`` each).

    Returns ``(row, output)``: the row holds the judge's metrics, NFE, NFE per step and the
    sampling seconds; the :class:`~framework.generators.SampleOutput` is for pictures.
    """
    start = time.perf_counter()
    out = _sample_checked(model, conditions, guidance, steps=steps, seed=seed, weak=weak, progress=progress)
    seconds = time.perf_counter() - start
    row = {"guidance": label, "expression": guidance, **judge.evaluate(out.media, requested),
           "nfe": out.nfe, "nfe_per_step": out.nfe / len(out.stats), "seconds": seconds}
    return row, out


def evaluate(model, guidances: dict[str, str], n: int, steps: int, seed: int, cache_dir: Path,
             names: list[str] | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """Sample ``n`` random requests per guidance and score them with the modality's judge."""
    from framework.core.conditions import Conditions

    modality = plugins.get(model.hparams.modality)
    judge = modality.judge(model.specs, model.codec, cache_dir)
    names = names or [k for k, s in model.specs.items() if s.kind == "categorical"]
    requested = random_requests(model.specs, names, n, seed)
    conds = Conditions.from_raw(model.specs, dict(requested), n)
    return [score_guidance(model, judge, conds, requested, label, g, steps, seed, progress=progress)[0]
            for label, g in guidances.items()]


def format_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of :func:`evaluate` rows."""
    fixed = {"guidance", "expression", "nfe", "nfe_per_step", "seconds"}
    metrics = [k for k in rows[0] if k not in fixed]  # whatever the modality's judge reports
    head = "| guidance | " + " | ".join(metrics) + " | NFE | NFE/step | seconds |"
    lines = [head, "|" + "---|" * (len(metrics) + 4)]
    for r in rows:
        vals = " | ".join(f"{r[m]:.1f}" if abs(r[m]) >= 10 else f"{r[m]:.2f}" for m in metrics)
        lines.append(f"| {r['guidance']} | {vals} | {r['nfe']} | {r['nfe_per_step']:.2f} | "
                     f"{r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def _check_eval_args(model, args: argparse.Namespace, guidances: dict[str, str | None]) -> None:
    from framework.core.conditions import Conditions
    from framework.guidance import parse
    from framework.guidance.given import check_given

    if not model.hparams.get("modality"):
        raise ArgumentError(f"checkpoint {args.checkpoint} has no modality, so there is no judge to "
                            f"score its samples (eval needs a modality plugin's metrics)")
    categorical = [k for k, s in model.specs.items() if s.kind == "categorical"]
    for name in args.conditions or []:
        if name not in model.specs:
            raise ConditionError(f"unknown condition {name!r}; this model has {sorted(model.specs)}")
        if name not in categorical:
            raise ConditionError(f"--conditions {name}: eval draws random labels, and {name!r} is a "
                                 f"{model.specs[name].kind} condition; categorical ones: {categorical}")
    _check_steps(model, args.steps)
    requested = args.conditions or categorical
    probe = Conditions.from_raw(model.specs, dict.fromkeys(requested, 0), 1)
    for g in guidances.values():
        if g is not None:
            check_given(parse(g), probe)
        if g is not None and any(b.network != "main" for b in parse(g).branches()):
            raise ArgumentError(f"eval samples one model; the guidance {g!r} needs another network "
                                f"(.on(...)); use polyguide sample --weak")


def _eval(args: argparse.Namespace) -> int:
    check_input_file(args.checkpoint, "checkpoint")
    for g in args.guidance:
        _parse_guidance(g)
    if len(set(args.guidance)) != len(args.guidance):
        raise ArgumentError("the same --guidance is given twice")
    if args.conditions is not None and len(set(args.conditions)) != len(args.conditions):
        raise ArgumentError(f"--conditions names a condition twice: {' '.join(args.conditions)}")
    if args.out is not None:
        check_output_dir(args.out)
    if args.cache is not None:
        check_output_dir(args.cache, "--cache folder")
    model = _load(args.checkpoint)
    guidances = {g: g for g in args.guidance} or {"default": None}
    _check_eval_args(model, args, guidances)
    steps = _steps_or_default(model, args.steps)
    rows = evaluate(model, guidances, args.n, steps, args.seed, args.cache or args.checkpoint.parent,
                    args.conditions, progress=not args.no_progress)
    table = format_table(rows)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "eval.json").write_text(json.dumps(rows, indent=2))
        (args.out / "eval.md").write_text(table)
        print(f"wrote {args.out / 'eval.json'} and eval.md")
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
    from framework.training.module import export

    check_input_file(args.checkpoint, "checkpoint")
    dest = check_output_file(args.dest, "export destination")
    same = dest.exists() and dest.resolve() == args.checkpoint.resolve()
    if dest.exists() and not same and not args.force and not is_polyguide_checkpoint(dest):
        raise OutputError(f"export destination {dest} exists and is not a polyguide checkpoint; "
                          f"refusing to overwrite it (give --force to replace it)")
    path = export(args.checkpoint, dest)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``modalities``, ``sample`` and ``eval`` on the CLI's sub-parsers."""
    m = sub.add_parser("modalities", help="list the installed modality plugins")
    m.set_defaults(run=_modalities)

    s = sub.add_parser("sample", help="sample from a checkpoint with any guidance",
                       description="Sample from a trained checkpoint and write the modality's media.")
    s.add_argument("--checkpoint", type=Path, required=True)
    s.add_argument("--cond", action="append", default=[], metavar="NAME=VALUE",
                   help="a condition value, e.g. --cond shape=circle (repeatable)")
    s.add_argument("--guidance", type=non_empty, default=None,
                   help='e.g. "uncond + 4*(cond(shape) - uncond) + 3*(cond(color) - uncond)"')
    s.add_argument("--steps", type=bounded_int(1, MAX_STEPS), default=None,
                   help=f"sampling steps (default 30, at most {MAX_STEPS:,}; tokens for autoregressive "
                        f"models)")
    s.add_argument("--n", type=bounded_int(1, MAX_N), default=None,
                   help=f"samples (default 16, at most {MAX_N:,})")
    s.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=0)
    s.add_argument("--weak", type=Path, default=None, help="checkpoint of the 'weak' network (autoguidance)")
    s.add_argument("--out", type=Path, default=None, help="output folder (default: samples)")
    s.add_argument("--prompt", type=non_empty, default=None,
                   help="text models: a prefix to continue (streams the text)")
    s.add_argument("--max-tokens", type=bounded_int(1, MAX_TOKENS), default=None,
                   help=f"text models: tokens to generate (streams; default 64, at most {MAX_TOKENS:,})")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(run=_sample)

    e = sub.add_parser("eval", help="score guided samples with the modality's metrics",
                       description="Sample random requests under each guidance and score them "
                                   "(per-condition accuracy, Fréchet distance, diversity).")
    e.add_argument("--checkpoint", type=Path, required=True)
    e.add_argument("--guidance", type=non_empty, action="append", default=[], help="repeatable")
    e.add_argument("--conditions", nargs="*", help="conditions to request (default: every categorical one)")
    e.add_argument("--n", type=bounded_int(1, MAX_N), default=256,
                   help=f"samples per guidance (at most {MAX_N:,})")
    e.add_argument("--steps", type=bounded_int(1, MAX_STEPS), default=None,
                   help=f"sampling steps (default 30, at most {MAX_STEPS:,} and a token model's length)")
    e.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=0)
    e.add_argument("--cache", type=Path, default=None, help="where the judge classifier is cached "
                                                            "(default: the checkpoint's folder)")
    e.add_argument("--out", type=Path, default=None)
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(run=_eval)

    x = sub.add_parser("export", help="strip a training checkpoint to weights + config for shipping")
    x.add_argument("checkpoint", type=Path)
    x.add_argument("dest", type=Path)
    x.add_argument("--force", action="store_true",
                   help="overwrite dest even if it is not a polyguide checkpoint")
    x.set_defaults(run=_export)
