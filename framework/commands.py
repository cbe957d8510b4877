"""``polyguide modalities``, ``polyguide sample`` and ``polyguide eval``: checkpoints → media."""

from __future__ import annotations

import argparse
import inspect
import json
import time
from pathlib import Path
from typing import Any

import torch

from . import plugins
from .conditions import ConditionError, ConditionSpec

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
    """``["shape=circle", "color=red"]`` → raw values, with errors naming the valid choices."""
    raw: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name or not value:
            raise ConditionError(f"--cond takes name=value, got {pair!r}")
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


def _load(path: Path):
    from .training import load

    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return load(str(path))


def stream_text(model, raw: dict[str, Any], guidance: str | None, prompt: str | None, max_tokens: int,
                seed: int, weak=None, emit=print) -> dict[str, Any]:
    """Guided autoregressive text, streamed to ``emit`` as it is sampled (one sample).

    The model sees at most its trained length ``L`` of tokens; longer generations continue from
    the last ``L/2`` tokens as a new prompt (a sliding window, re-prefilled). Stops at the end
    token or after ``max_tokens``. Needs a text codec (``prompt``, ``decode_text``, ``eos_id``).
    """
    codec = model.codec
    if codec is None or not hasattr(codec, "decode_text"):
        raise ValueError("streaming text needs a text model (a codec with a tokenizer)")
    L = codec.shape[0]
    context = codec.prompt(prompt, 1) if prompt else torch.zeros(1, 0, dtype=torch.long)
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


def _sample(args: argparse.Namespace) -> int:
    model = _load(args.checkpoint)
    raw = parse_conditions(args.cond, model.specs)
    weak = _load(args.weak) if args.weak else None
    if args.prompt is not None or args.max_tokens is not None:
        r = stream_text(model, raw, args.guidance, args.prompt, args.max_tokens or 64, args.seed, weak)
        print(f"[{r['tokens']} tokens in {r['seconds']:.1f} s: {r['tokens_per_s']:.0f} tokens/s, "
              f"NFE {r['nfe']} over {r['steps']} steps]")
        return 0
    out = model.sample(raw, args.guidance, n=args.n, steps=args.steps, seed=args.seed, weak=weak,
                       progress=not args.no_progress)
    modality = plugins.get(model.hparams.modality) if model.hparams.get("modality") else None
    args.out.mkdir(parents=True, exist_ok=True)
    title = ", ".join(args.cond) + (f" | {args.guidance}" if args.guidance else "")
    extra = {}
    if modality is not None and "conditions" in inspect.signature(modality.write).parameters:
        extra["conditions"] = model.conditions(raw, args.n)  # e.g. motion draws the requested path
    files = (modality.write(out.media, args.out, title=title, **extra) if modality is not None
             else plugins.Modality().write(out.samples, args.out))
    torch.save({"samples": out.samples.cpu(), "conditions": raw, "guidance": args.guidance},
               args.out / "samples.pt")
    print(f"{args.n} samples, {len(out.stats)} steps, NFE {out.nfe} "
          f"({out.nfe / max(1, len(out.stats)):.2f}/step), {out.seconds:.1f} s")
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
    """Sample a :class:`~framework.conditions.Conditions` batch of ``B`` under one guidance and score
    the media with ``judge`` against ``requested`` labels (``[B]`` each).

    Returns ``(row, output)``: the row holds the judge's metrics, NFE, NFE per step and the
    sampling seconds; the :class:`~framework.generators.SampleOutput` is for pictures.
    """
    start = time.perf_counter()
    out = model.sample(conditions, guidance, steps=steps, seed=seed, weak=weak, progress=progress)
    seconds = time.perf_counter() - start
    row = {"guidance": label, "expression": guidance, **judge.evaluate(out.media, requested),
           "nfe": out.nfe, "nfe_per_step": out.nfe / len(out.stats), "seconds": seconds}
    return row, out


def evaluate(model, guidances: dict[str, str], n: int, steps: int, seed: int, cache_dir: Path,
             names: list[str] | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """Sample ``n`` random requests per guidance and score them with the modality's judge."""
    from .conditions import Conditions

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


def _eval(args: argparse.Namespace) -> int:
    model = _load(args.checkpoint)
    guidances = {g: g for g in args.guidance} or {"default": None}
    for name in args.conditions or []:
        if name not in model.specs:
            raise ConditionError(f"unknown condition {name!r}; this model has {sorted(model.specs)}")
    rows = evaluate(model, guidances, args.n, args.steps, args.seed, args.cache or args.checkpoint.parent,
                    args.conditions, progress=not args.no_progress)
    table = format_table(rows)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "eval.json").write_text(json.dumps(rows, indent=2))
        (args.out / "eval.md").write_text(table)
        print(f"wrote {args.out / 'eval.json'} and eval.md")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .training import export

    path = export(args.checkpoint, args.dest)
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
    s.add_argument("--guidance", default=None,
                   help='e.g. "uncond + 4*(cond(shape) - uncond) + 3*(cond(color) - uncond)"')
    s.add_argument("--steps", type=int, default=30)
    s.add_argument("--n", type=int, default=16)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--weak", type=Path, default=None, help="checkpoint of the 'weak' network (autoguidance)")
    s.add_argument("--out", type=Path, default=Path("samples"))
    s.add_argument("--prompt", default=None, help="text models: a prefix to continue (streams the text)")
    s.add_argument("--max-tokens", type=int, default=None, help="text models: tokens to generate (streams)")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(run=_sample)

    e = sub.add_parser("eval", help="score guided samples with the modality's metrics",
                       description="Sample random requests under each guidance and score them "
                                   "(per-condition accuracy, Fréchet distance, diversity).")
    e.add_argument("--checkpoint", type=Path, required=True)
    e.add_argument("--guidance", action="append", default=[], help="repeatable")
    e.add_argument("--conditions", nargs="*", help="conditions to request (default: every categorical one)")
    e.add_argument("--n", type=int, default=256)
    e.add_argument("--steps", type=int, default=30)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--cache", type=Path, default=None, help="where the judge classifier is cached "
                                                            "(default: the checkpoint's folder)")
    e.add_argument("--out", type=Path, default=None)
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(run=_eval)

    x = sub.add_parser("export", help="strip a training checkpoint to weights + config for shipping")
    x.add_argument("checkpoint", type=Path)
    x.add_argument("dest", type=Path)
    x.set_defaults(run=_export)
