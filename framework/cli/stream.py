"""Guided autoregressive text streamed as it is sampled (``polyguide sample --prompt/--max-tokens``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from framework.cli.args import MAX_SEED
from framework.cli.outputs import MANIFEST, claim, complete
from framework.core.errors import ArgumentError, NonFiniteError, one_line

__all__ = ["stream_samples", "stream_text"]


def stream_text(model, raw: dict[str, Any], guidance, prompt: str | None, max_tokens: int,
                seed: int, weak=None, emit=print, keep_going: bool = False, min_tokens: int = 0
                ) -> dict[str, Any]:
    """Guided autoregressive text, streamed to ``emit`` as it is sampled (one sample).

    The text begins with ``prompt``, taken as whole words (a prompt ending in a letter or digit is
    not continued mid-word: the codec's ``word_continuations``). The model sees at most its
    trained length ``L`` of tokens; longer generations continue from the last ``L/2`` tokens as a
    new prompt (a sliding window, re-prefilled). A speech ends at the end token; with
    ``keep_going`` another one starts (same conditions, after a blank line) until ``max_tokens``
    tokens are sampled; no speech ends before ``min_tokens`` of its tokens are sampled (the end
    token is banned until then). Needs a text codec (``prompt``, ``decode_text``, ``eos_id``).

    Returns ``{"text", "speeches", "tokens", "nfe", "steps", "seconds", "tokens_per_s", "ended"}``:
    ``tokens`` counts the sampled tokens (end tokens included), ``ended`` whether the last speech
    reached its end token.
    """
    if isinstance(guidance, str):  # parsed once, not once per chunk
        from framework.guidance import parse

        guidance = parse(guidance)
    codec = model.codec
    if codec is None or not hasattr(codec, "decode_text"):
        raise ArgumentError("--prompt and --max-tokens stream text: they need a text model "
                            f"(this one is {_kind(model)})")
    if model.hparams.get("family") != "autoregressive":
        raise ArgumentError("--prompt and --max-tokens stream text token by token: they need an "
                            f"autoregressive model (this one is {_kind(model)})")
    L = codec.shape[0]
    try:
        head = codec.prompt(prompt, 1)[0].tolist() if prompt else []
    except ValueError as e:  # e.g. longer than the model's context
        raise ArgumentError(f"--prompt does not fit this model: {one_line(e)}") from e
    ban = codec.word_continuations(prompt) if prompt and hasattr(codec, "word_continuations") else None
    speeches: list[str] = []
    if not 0 <= min_tokens <= max_tokens:
        raise ArgumentError(f"--min-tokens {min_tokens} must be between 0 and --max-tokens ({max_tokens})")
    speech, context = list(head), torch.tensor([head], dtype=torch.long)  # all ids / the model's window
    own = len(head)  # ids of the speech that were not sampled (the prompt)
    shown, nfe, steps, sampled, ended = prompt or "", 0, 0, 0, False
    start = time.perf_counter()
    if shown:
        emit(shown, end="", flush=True)

    def show(i: int, x: torch.Tensor, out) -> None:
        nonlocal shown
        text = codec.decode_text(torch.tensor([speech + x[0, 1 + context.shape[1]:].tolist()]))[0]
        # a token may end inside a multi-byte character (decoded as U+FFFD until completed)
        if text.startswith(shown) and not text.endswith("\ufffd"):
            emit(text[len(shown):], end="", flush=True)
            shown = text

    def finish() -> None:
        nonlocal shown
        final = codec.decode_text(torch.tensor([speech]))[0] if speech else ""
        emit(final[len(shown):] if final.startswith(shown) else "\n" + final, end="", flush=True)
        speeches.append(final)
        shown = ""

    while sampled < max_tokens:
        budget = min(max_tokens - sampled, L - context.shape[1])
        res = model.sample(raw, guidance, n=1, steps=budget, seed=(seed + steps) % MAX_SEED, weak=weak,
                           init=context if context.shape[1] else None, callback=show, ban_first=ban,
                           min_new_tokens=min(budget, max(0, min_tokens - (len(speech) - own))))
        nfe, steps, ban = nfe + res.nfe, steps + len(res.stats), None
        chunk = res.samples[0].tolist()
        ended = codec.eos_id in chunk
        if ended:
            chunk = chunk[:chunk.index(codec.eos_id)]
        sampled += len(chunk) + ended
        speech += chunk
        if ended:
            finish()
            if not keep_going or sampled >= max_tokens:
                break
            emit("\n\n", end="", flush=True)  # the next speech, from the start of a speech
            speech, context, own = [], torch.zeros(1, 0, dtype=torch.long), 0
            continue
        context = torch.tensor([(context[0].tolist() + chunk)[-(L // 2):]])
    if not ended:
        finish()
    emit("")
    seconds = time.perf_counter() - start
    return {"text": "\n\n".join(speeches), "speeches": speeches, "tokens": sampled, "nfe": nfe,
            "steps": steps, "seconds": seconds, "tokens_per_s": sampled / max(seconds, 1e-9), "ended": ended}


def _kind(model) -> str:
    modality = model.hparams.get("modality") or "no modality"
    return f"a {model.hparams.get('family', '?')} model of {modality}"


def stream_samples(args: argparse.Namespace, model, raw: dict[str, Any], expr, weak, seed: int,
            out_dir: Path | None) -> int:
    """``--prompt``/``--max-tokens``: stream ``--n`` texts; with ``--out``, write them too."""
    n, texts = args.n or 1, []
    for k in range(n):
        if n > 1:
            print(f"{'' if k == 0 else chr(10)}=== sample {k + 1} ===")
        try:
            r = stream_text(model, raw, expr, args.prompt, args.max_tokens or 64,
                            (seed + 1_000_003 * k) % MAX_SEED, weak, keep_going=args.keep_going,
                            min_tokens=args.min_tokens or 0)
        except FloatingPointError as e:
            raise NonFiniteError(f"sampling produced non-finite logits: {one_line(e)}") from e
        texts.append(r["text"])
        print(f"[{r['tokens']} tokens in {r['seconds']:.1f} s: {r['tokens_per_s']:.0f} tokens/s, "
              f"NFE {r['nfe']} over {r['steps']} steps]")
        if r["ended"] and r["tokens"] < (args.max_tokens or 64) and not args.keep_going:
            print(f"[the speech ended after {r['tokens']} tokens; --continue starts another one until "
                  f"--max-tokens]")
    if out_dir is not None:
        modality = model.plugin
        title = ", ".join(args.cond) + (f" | {args.guidance}" if args.guidance else "")
        out_dir, note = claim(out_dir)
        if note:
            print(note)
        files = modality.write(texts, out_dir, title=title)
        complete(out_dir, files, command="sample", checkpoint=str(args.checkpoint), n=n, seed=seed,
                 guidance=args.guidance, conditions=args.cond, prompt=args.prompt)
        for f in [*files, out_dir / MANIFEST]:
            print(f"wrote {f}")
    return 0
