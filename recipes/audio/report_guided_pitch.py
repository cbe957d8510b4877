"""Pitch under guidance: why guided `words_world` speech leaves the speaker's F0, and what keeps it.

    python recipes/audio/report_guided_pitch.py [--n 60] [--seed 7301] [--steps 20] [--out docs/results]

The shipped ``words_world`` model (flow on WORLD features) sampled for ``--n`` random
(word, speaker, pitch) requests under each guidance form below. Per form, measured from the WAVs:
the harmonic spacing (cepstrum) and WORLD's median F0 (DIO) against the requested speaker's real
F0 (median over held-out real renders of that speaker and pitch bin), the share of clips within
15 % by each, word accuracy by our judge and by the independent DTW template matcher (real
renders of seed 2000), the judge's speaker accuracy, and the model evaluations per step.

Forms: unguided; the word alone, unguided and under CFG (the speaker and pitch are in neither
branch); joint CFG over (word, speaker, pitch); word guidance *on top of* the full conditional (the direction
``cond(word, speaker) − cond(speaker)`` added to ``cond(word, speaker, pitch)``); nested guidance;
CFG-rescale (φ = 0.7) and interval guidance of the joint CFG; and the same CFGs with the source
channels (lf0, vuv, aperiodicity) kept from the conditional prediction
(:class:`modalities.audio.guidance.KeepChannels`: only the spectral envelope is guided).
``--forms 0 7 10`` runs a subset (indices into ``FORMS``); ``--tag`` suffixes the file names.

Writes ``audio_guided_pitch<tag>.{json,md,png}`` into ``--out``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import report_args, write_report
from report_pitch import CHECKPOINTS, median_f0, requests, target_f0, words_scores

from framework.core.conditions import Conditions
from framework.training.module import load
from modalities.audio.guidance import source_kept
from modalities.audio.pitch import harmonic_spacing
from modalities.audio.plugin import words_judge
from modalities.audio.speech import load_words
from modalities.audio.template import TemplateMatcher

FULL = "cond(word, speaker, pitch)"
FORMS: list[tuple[str, Any]] = [
    ("unguided", FULL),
    ("word only, unguided (speaker, pitch dropped)", "cond(word)"),
    ("CFG, word only", "cfg(word, 3)"),
    ("CFG, joint", "cfg((word, speaker, pitch), 3)"),
    ("word direction on the conditional", f"{FULL} + 2*(cond(word, speaker) - cond(speaker))"),
    ("nested word 3, speaker 2", "nested([word, speaker], [3, 2])"),
    ("CFG-rescale of joint CFG (φ 0.7)", "rescale(cfg((word, speaker, pitch), 3), 0.7)"),
    ("interval joint CFG, τ ∈ [0.2, 0.8]", "interval((word, speaker, pitch), 3, 0.2, 0.8)"),
    ("source kept, CFG word only", ("cfg(word, 3)", FULL)),
    ("source kept, CFG joint", ("cfg((word, speaker, pitch), 3)", FULL)),
    ("source kept, interval joint CFG", ("interval((word, speaker, pitch), 3, 0.2, 0.8)", FULL)),
]


def expression(form: Any):
    return source_kept(*form) if isinstance(form, tuple) else form


def describe(form: Any) -> str:
    return f"keep_channels({form[0]}, {form[1]}, [lf0, vuv, cap])" if isinstance(form, tuple) else form


def run(n: int, seed: int, steps: int,
        forms: list[tuple[str, Any]]) -> tuple[list[dict], dict[str, torch.Tensor]]:
    judge = words_judge(CHECKPOINTS)
    refs = load_words(300, 2000)
    matcher = TemplateMatcher(refs.audio, refs.word)
    held = load_words(500, 1001)
    targets = target_f0(held)
    raw, want = requests(n, seed, targets)
    model = load(CHECKPOINTS / "words_world.ckpt").eval()
    conds = Conditions.from_raw(model.specs, dict(raw), n)
    rows, media = [], {}
    for name, form in forms:
        t0 = time.perf_counter()
        out = model.sample(conds, expression(form), steps=steps, seed=seed)
        wave = out.media
        secs = time.perf_counter() - t0
        sp = harmonic_spacing(wave)
        f0 = torch.tensor([median_f0(w) for w in wave])
        e_sp, e_f0 = (sp / want - 1).abs(), (f0 / want - 1).abs()
        with torch.no_grad():
            spk = float((judge.classifier(wave)["speaker"].argmax(-1) == raw["speaker"]).float().mean())
        nfe = getattr(out, "nfe", None)
        rows.append({"form": name, "expression": describe(form),
                     "within_15_spacing": float((e_sp <= 0.15).float().mean()),
                     "within_15_f0": float((e_f0 <= 0.15).float().mean()),
                     "spacing_error": float(e_sp.nanmedian()), "f0_error": float(e_f0.nanmedian()),
                     "f0_ratio_median": float((f0 / want).nanmedian()),
                     "acc_speaker": spk, "nfe": nfe, "seconds": secs,
                     **words_scores(wave, raw["word"], judge, matcher)})
        media[name] = wave
        print({k: v for k, v in rows[-1].items() if not k.startswith("per")}, flush=True)
    return rows, media


def markdown(rows: list[dict], n: int, seed: int) -> str:
    lines = [f"`words_world`, {n} random (word, speaker, pitch) requests, seed {seed}", "",
             "| guidance | expression | within 15 % of the speaker's F0: spacing / WORLD F0 | "
             "median F0 error | "
             "generated F0 ÷ requested (median) | words: judge | words: DTW | worst word (judge / DTW) | "
             "speaker (judge) | NFE |", "|---|---|---|---|---|---|---|---|---|---|"]
    from modalities.audio.speech import WORDS

    for r in rows:
        worst = int(np.nanargmin(np.minimum(r["per_word_judge"], r["per_word_dtw"])))
        lines.append(f"| {r['form']} | `{r['expression']}` | {r['within_15_spacing']:.2f} / "
                     f"{r['within_15_f0']:.2f} | {100 * r['f0_error']:.0f} % | {r['f0_ratio_median']:.2f} | "
                     f"{r['acc_word_judge']:.2f} | "
                     f"{r['acc_word_dtw']:.2f} | {WORDS[worst]} {r['per_word_judge'][worst]:.2f} / "
                     f"{r['per_word_dtw'][worst]:.2f} | {r['acc_speaker']:.2f} | {r['nfe']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = report_args(__doc__.splitlines()[0], 60, seed=7301)
    p.add_argument("--forms", type=int, nargs="*", help="indices into FORMS (default: all)")
    p.add_argument("--tag", default="", help="suffix of the output files' names")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    forms = [FORMS[i] for i in args.forms] if args.forms else FORMS
    rows, media = run(args.n, args.seed, args.steps, forms)
    res = {"n": args.n, "seed": args.seed, "rows": rows}
    text = markdown(rows, args.n, args.seed)
    write_report(args.out, f"audio_guided_pitch{args.tag}", res, text, indent=1)
    from modalities.audio.writers import spectrogram_grid

    spectrogram_grid(torch.cat([v[:4] for v in media.values()]), rows=list(media),
                     title="words_world: the first 4 requests under each guidance form").save(
        args.out / f"audio_guided_pitch{args.tag}.png")


if __name__ == "__main__":
    main()
