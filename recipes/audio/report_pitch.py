"""The speaker's pitch and word accuracy, measured from the WAVs, for docs/audio.md.

    python recipes/audio/report_pitch.py [--n 48] [--out docs/results]

1. **Decoders on real clips** (``--n`` held-out renders, seed 1001): the ``mel`` representation
   (Griffin-Lim), the ``codec`` and ``world`` (WORLD vocoder) each encode and decode the clips;
   per decoder: the harmonic spacing against the clip's own F0 (cepstrum vs WORLD's DIO on the
   original), the share of clips whose spacing sits on a decoder rate (32, 50 or 64 Hz ± 3 %),
   the median F0 error of the round trip, resemblyzer similarity to the original, and word
   accuracy by our judge and by the independent DTW template matcher.
2. **Generated speech** (every shipped word model, unguided and under its guided default):
   ``--n`` random (word, speaker, pitch) requests; the harmonic spacing against the requested
   speaker's real F0 (the median F0 of held-out real clips of that speaker and pitch bin), the
   share within 15 %, the share on a decoder rate, and word accuracy per word by the judge and by
   the DTW matcher (references: real renders of seed 2000, used by nothing else).

Writes ``audio_pitch.json``, ``audio_pitch.md`` and ``audio_pitch.png`` into ``--out``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import report_args, write_report  # beside this script (run as a script)

from framework.core.conditions import Conditions
from framework.evaluation import markdown_table
from framework.training.module import load
from modalities.audio.codec import EncodecCodec
from modalities.audio.mel import LogMel
from modalities.audio.metrics import speaker_embed
from modalities.audio.pitch import f0_error, f0_track, harmonic_spacing
from modalities.audio.plugin import words_judge
from modalities.audio.speech import PITCHES, SPEAKERS, WORDS, load_words
from modalities.audio.template import TemplateMatcher
from modalities.audio.world import World

HERE = Path(__file__).resolve().parent
CHECKPOINTS = HERE / "checkpoints"
RATES = (32.0, 50.0, 64.0)  # mel token rate, codec frame rate, mel frame rate (Hz)
MODELS = {  # model → (unguided, guided default)
    "words_flow": ("cond(word, speaker, pitch)", "cfg(word, 3)"),
    "words_ar": ("cond(word, speaker, pitch)", "cfg(word, 2)"),
    "words_world": ("cond(word, speaker, pitch)", "cfg(word, 3)"),
}


def median_f0(wave: torch.Tensor) -> float:
    f0 = f0_track(wave.reshape(-1).numpy())
    return float(np.median(f0[f0 > 0])) if (f0 > 0).any() else float("nan")


def on_rate(spacing: torch.Tensor) -> torch.Tensor:
    """Per clip: is the harmonic spacing a decoder rate (± 3 %)?"""
    return torch.stack([(spacing / r - 1).abs() <= 0.03 for r in RATES]).any(0)


def per_word(right: torch.Tensor, words: torch.Tensor) -> list[float]:
    return [float(right[words == w].float().mean()) if bool((words == w).any()) else float("nan")
            for w in range(len(WORDS))]


def words_scores(media: torch.Tensor, words: torch.Tensor, judge, matcher: TemplateMatcher) -> dict[str, Any]:
    with torch.no_grad():
        ours = judge.classifier(media)["word"].argmax(-1) == words
    dtw = matcher.predict(media) == words
    return {"acc_word_judge": float(ours.float().mean()), "acc_word_dtw": float(dtw.float().mean()),
            "per_word_judge": per_word(ours, words), "per_word_dtw": per_word(dtw, words)}


def decoder_rows(held, judge, matcher, n: int) -> tuple[list[dict], dict[str, torch.Tensor]]:
    x = held.audio[:n]
    words = held.word[:n]
    f0_ref = [f0_track(w[0].numpy()) for w in x]
    real_f0 = torch.tensor([median_f0(w) for w in x])
    emb = speaker_embed(x)
    decoded = {"real clips (no decoder)": x}
    for name, codec in (("mel → Griffin-Lim", LogMel()), ("codec (EnCodec, 50 frames/s)", EncodecCodec()),
                        ("world → WORLD vocoder", World())):
        decoded[name] = codec.decode(codec.encode(x))
    rows = []
    for name, y in decoded.items():
        sp = harmonic_spacing(y)
        rows.append({"decoder": name, "spacing_error": float(((sp / real_f0) - 1).abs().nanmedian()),
                     "on_decoder_rate": float(on_rate(sp).float().mean()),
                     "f0_error": float(np.nanmedian([f0_error(r, f0_track(w[0].numpy()))
                                                     for r, w in zip(f0_ref, y, strict=True)])),
                     "speaker_sim": float((speaker_embed(y) * emb).sum(-1).mean()),
                     **words_scores(y, words, judge, matcher)})
        print(rows[-1]["decoder"], {k: v for k, v in rows[-1].items() if not k.startswith("per")}, flush=True)
    return rows, decoded


def target_f0(held) -> dict[tuple[int, int], float]:
    """The median real F0 per (speaker, pitch bin), and per speaker (pitch bin −1)."""
    f0 = torch.tensor([median_f0(w) for w in held.audio])
    out = {}
    for s in range(len(SPEAKERS)):
        mine = held.speaker == s
        out[(s, -1)] = float(f0[mine].nanmedian())
        for p in range(len(PITCHES)):
            if int((mine & (held.pitch == p)).sum()) >= 2:
                out[(s, p)] = float(f0[mine & (held.pitch == p)].nanmedian())
    return out


def requests(n: int, seed: int, targets: dict) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``n`` random (word, speaker, pitch) requests (seed ``seed``) as label indices ``[n]`` each, and
    the F0 each should have ``[n]`` Hz (``targets``: :func:`target_f0`; the speaker's median when
    the held-out clips have too few of that speaker at that pitch)."""
    g = torch.Generator().manual_seed(seed)
    raw = {"word": torch.randint(0, 10, (n,), generator=g),
           "speaker": torch.randint(0, 15, (n,), generator=g),
           "pitch": torch.randint(0, 3, (n,), generator=g)}
    want = torch.tensor([targets.get((int(s), int(p)), targets[(int(s), -1)])
                         for s, p in zip(raw["speaker"], raw["pitch"], strict=True)])
    return raw, want


def model_rows(judge, matcher, targets, n: int, seed: int, steps: int) -> tuple[list[dict], dict]:
    raw, want = requests(n, seed, targets)
    rows, media = [], {}
    for name, exprs in MODELS.items():
        path = CHECKPOINTS / f"{name}.ckpt"
        if not path.is_file():
            continue
        model = load(path).eval()
        conds = Conditions.from_raw(model.specs, dict(raw), n)
        k = model.shape[-1] if model.hparams.family == "autoregressive" else steps
        for expr in exprs:
            out = model.sample(conds, expr, steps=k, seed=seed).media
            sp = harmonic_spacing(out)
            err = (sp / want - 1).abs()
            rows.append({"model": name, "expression": expr, "spacing_median_hz": float(sp.nanmedian()),
                         "spacing_error": float(err.nanmedian()),
                         "within_15": float((err <= 0.15).float().mean()),
                         "on_decoder_rate": float(on_rate(sp).float().mean()),
                         **words_scores(out, raw["word"], judge, matcher)})
            media[(name, expr)] = out
            print({k: v for k, v in rows[-1].items() if not k.startswith("per")}, flush=True)
    return rows, media


def _f(v: float) -> str:
    return "–" if v != v else f"{v:.2f}"


def markdown(res: dict[str, Any]) -> str:
    decoders = markdown_table(
        ["decoder", "harmonic spacing vs the clip's F0 (median error)", "clips on a decoder rate",
         "F0 error (median)", "resemblyzer similarity", "words: judge", "words: DTW"],
        [[r["decoder"], f"{100 * r['spacing_error']:.1f} %", f"{r['on_decoder_rate']:.2f}",
          f"{100 * r['f0_error']:.1f} %", f"{r['speaker_sim']:.3f}", f"{r['acc_word_judge']:.2f}",
          f"{r['acc_word_dtw']:.2f}"] for r in res["decoders"]], fmt=str)
    models = markdown_table(
        ["model", "guidance", "median spacing (Hz)", "spacing vs the speaker's real F0 (median error)",
         "within 15 %", "on a decoder rate", "words: judge", "words: DTW"],
        [[r["model"], f"`{r['expression']}`", f"{r['spacing_median_hz']:.0f}",
          f"{100 * r['spacing_error']:.0f} %", f"{r['within_15']:.2f}", f"{r['on_decoder_rate']:.2f}",
          f"{r['acc_word_judge']:.2f}", f"{r['acc_word_dtw']:.2f}"] for r in res["models"]], fmt=str)
    per_word = markdown_table(
        ["clips", *WORDS],
        [[r.get("decoder") or f"{r['model']} `{r['expression']}`",
          *(f"{_f(a)} / {_f(b)}" for a, b in zip(r["per_word_judge"], r["per_word_dtw"], strict=True))]
         for r in [*res["decoders"], *res["models"]]], fmt=str)
    return (f"Decoders on {res['n']} real held-out clips (render seed 1001)\n\n{decoders}\n"
            f"Generated speech, {res['n']} random (word, speaker, pitch) requests\n\n{models}\n"
            f"Word accuracy per word (judge / DTW)\n\n{per_word}")


def main() -> None:
    p = report_args(__doc__.splitlines()[0], 48, seed=5151)
    p.add_argument("--models", nargs="*", default=list(MODELS), help="word models to generate from")
    args = p.parse_args()
    for m in set(MODELS) - set(args.models):
        MODELS.pop(m)
    torch.manual_seed(args.seed)
    judge = words_judge(CHECKPOINTS)
    refs = load_words(300, 2000)
    matcher = TemplateMatcher(refs.audio, refs.word)
    held = load_words(500, 1001)
    decoders, decoded = decoder_rows(held, judge, matcher, args.n)
    models, media = model_rows(judge, matcher, target_f0(held), args.n, args.seed, args.steps)
    res = {"n": args.n, "decoders": decoders, "models": models}
    write_report(args.out, "audio_pitch", res, markdown(res), indent=1)
    from modalities.audio.writers import spectrogram_grid

    rows = [*decoded.items(), *[(f"{m}, {e}", v) for (m, e), v in media.items() if not e.startswith("cond")]]
    title = "spectrograms: real clips, their round trips through each decoder, and generated clips (first 4)"
    spectrogram_grid(torch.cat([v[:4] for _, v in rows]), rows=[k for k, _ in rows], title=title
                     ).save(args.out / "audio_pitch.png")
    print(markdown(res))


if __name__ == "__main__":
    main()
