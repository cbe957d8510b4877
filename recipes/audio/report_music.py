"""Score the shipped music checkpoint under guidance and record the results for docs/audio.md.

    python recipes/audio/report_music.py [--n 48] [--out docs/results] [--samples outputs/music]

Requests are held-out clips (melodies no training clip used): each asks for that clip's style,
instrument, melody (its chromagram) and caption. For every guidance expression the report samples
one clip per request and judges it: style and instrument accuracy (a log-mel CNN trained on real
renders), melody similarity (cosine of requested and generated chromagrams), Fréchet distance and
diversity on the judge's features, NFE and seconds per clip. A negative-instrument table shows how
often the judge hears a piano with and without ``negative(…, instrument, piano, 3)``. A second
table judges style and instrument again with the *coarse* music judge, which reads log-mels at the
model's own resolution: Griffin-Lim decoding hides style from the default judge even for real
clips (the row "real clips through the mel representation"). Writes
``audio_music.json``, ``audio_music.md`` and the spectrogram grid ``audio_music.png`` into
``--out``, and WAVs + ``index.html`` per expression under ``--samples`` (to listen to).

:func:`music_section` is what ``recipes/audio/report.py`` calls to put this section in its report.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import report_args, write_report  # beside this script (run as a script)

from framework.core.conditions import Conditions
from framework.evaluation import markdown_table, score_guidance
from framework.evaluation.tables import number
from framework.training.module import load
from modalities.audio.chroma import chromagram
from modalities.audio.features import as_mono
from modalities.audio.metrics import AudioJudge, music_judge
from modalities.audio.music import INSTRUMENTS, STYLES
from modalities.audio.music_clips import render_clips
from modalities.audio.writers import write_audio

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
ALL = "style, instrument, melody, text"
GUIDANCE = {
    "no guidance (w=1)": f"cond({ALL})",
    "cfg joint, w=3": f"cfg(({ALL}), 3)",
    "melody only, cfg w=3": "cfg(melody, 3)",
    "independent: melody 2, instrument/style/text 3":
        "uncond + 2*(cond(melody) - uncond) + 3*(cond(instrument, style, text) - uncond)",
    "double (MusicGen): α=3, β=2":
        f"uncond + 3*(cond(melody) + 2*(cond({ALL}) - cond(melody)) - uncond)",
    # the style label on its own: no melody and no caption to copy the style from
    "style + instrument only, cfg w=2": "cfg((style, instrument), 2)",
    "style + instrument only, cfg w=3": "cfg((style, instrument), 3)",
}
NEGATIVE = {
    "no guidance (w=1), no caption": "cond(style, instrument, melody)",
    "not piano (negative w=3)": "negative((style, instrument, melody), instrument, piano, 3)",
}


def requests(n: int, seed: int = 7, melodies=None) -> tuple[torch.Tensor, dict[str, Any], list[str]]:
    """``n`` held-out real clips ``[n, 1, 64000]``, their raw conditions (style, instrument, melody
    chromagram, caption) and captions."""
    from modalities.audio.music import load_melodies

    waves, labels, captions = render_clips(melodies if melodies is not None else load_melodies(), n, seed,
                                           val=True)
    raw = {"style": labels["style"], "instrument": labels["instrument"], "melody": chromagram(waves),
           "text": captions}
    return waves, raw, captions


def _judged_instrument(judge: AudioJudge, media: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return judge.classifier(as_mono(media))["instrument"].argmax(-1)


def music_section(out: Path | str, *, n: int = 48, steps: int = 30, seed: int = 0,
                  checkpoint: Path | str = CHECKPOINTS / "music_flow.ckpt", samples: Path | str | None = None
                  ) -> tuple[dict[str, Any], str]:
    """Run the music evaluation; returns ``(results, markdown)`` and writes the grid PNG into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = load(str(checkpoint))
    judge = music_judge(Path(checkpoint).parent)
    coarse = music_judge(Path(checkpoint).parent, coarse=True)
    waves, raw, _ = requests(n)
    conds = Conditions.from_raw(model.specs, raw, n)
    requested = {"style": raw["style"], "instrument": raw["instrument"], "melody": raw["melody"]}
    real = judge.evaluate(waves, requested)
    with torch.no_grad():  # the ceiling of any model of this representation: encode, then Griffin-Lim
        decoded = model.codec.decode(model.codec.encode(waves))
    shuffled = dict(requested, melody=requested["melody"].roll(1, 0))  # another clip's tune: chance level
    rows = [{"guidance": "real held-out clips", "expression": None, **real, "nfe": 0, "nfe_per_step": 0,
             "seconds": 0.0},
            {"guidance": "real clips through the mel representation (Griffin-Lim)", "expression": None,
             **judge.evaluate(decoded, requested), "nfe": 0, "nfe_per_step": 0, "seconds": 0.0},
            {"guidance": "real clips vs another clip's melody", "expression": None,
             "melody_sim": judge.evaluate(waves, shuffled)["melody_sim"], "nfe": 0, "nfe_per_step": 0,
             "seconds": 0.0}]
    shown = {}
    for label, g in GUIDANCE.items():
        row, res = score_guidance(model, judge, conds, requested, label, g, steps, seed)
        row["seconds_per_clip"] = row["seconds"] / n
        rows.append(row)
        shown[label] = res.media
        if samples is not None:
            slug = "".join(c if c.isalnum() else "_" for c in label)[:40]
            write_audio(res.media, Path(samples) / slug, title=f"{label}: {g}")
    # negative instrument: requests that are not piano
    keep = torch.nonzero(raw["instrument"] != INSTRUMENTS.index("piano")).flatten()
    sub = conds.index(keep)
    neg_rows = []
    for label, g in NEGATIVE.items():
        start = time.perf_counter()
        res = model.sample(sub, g, steps=steps, seed=seed)
        heard = _judged_instrument(judge, res.media)
        neg_rows.append({"guidance": label, "expression": g,
                         "piano": float((heard == INSTRUMENTS.index("piano")).float().mean()),
                         "acc_instrument": float((heard == raw["instrument"][keep]).float().mean()),
                         "nfe": res.nfe, "seconds_per_clip": (time.perf_counter() - start) / len(keep)})
    # the picture: 4 requests (columns) × real + unguided + the two melody/instrument forms
    pick = torch.arange(4) * (n // 4)
    shown_rows = ["no guidance (w=1)", "independent: melody 2, instrument/style/text 3",
                  "double (MusicGen): α=3, β=2"]
    media = torch.cat([waves[pick], *[shown[r][pick] for r in shown_rows]])
    from modalities.audio.writers import spectrogram_grid

    cols = [f"{STYLES[int(raw['style'][i])]} / {INSTRUMENTS[int(raw['instrument'][i])]}" for i in pick]
    spectrogram_grid(media, rows=["real (held out)", "no guidance", "independent: melody 2, rest 3",
                                  "double (MusicGen): α=3, β=2"], cols=cols,
                     title=f"music: a held-out clip and generated clips for its style, instrument, melody "
                           f"and caption ({steps} Euler steps, Griffin-Lim)").save(out / "audio_music.png")
    labels = {"style": raw["style"], "instrument": raw["instrument"]}
    coarse_rows = [{"guidance": g, **{k: v for k, v in coarse.evaluate(m, labels).items()
                                      if k.startswith("acc")}}
                   for g, m in (("real held-out clips", waves),
                                ("real clips through the mel representation (Griffin-Lim)", decoded),
                                *shown.items())]
    results = {"n": n, "steps": steps, "judge_real_accuracy": judge.real_accuracy, "rows": rows,
               "negative": neg_rows, "coarse_judge_real_accuracy": coarse.real_accuracy,
               "coarse": coarse_rows}
    return results, markdown(results)


def markdown(results: dict[str, Any]) -> str:
    """The music section's tables."""
    judge = ", ".join(f"{k} {v:.2f}" for k, v in results["judge_real_accuracy"].items())
    scores = ["acc_style", "acc_instrument", "acc_all", "melody_sim", "fd", "diversity"]
    main = markdown_table(["guidance", *scores, "NFE", "s/clip"],
                          [[r["guidance"], *(number(r.get(k)) for k in scores), r["nfe"] or "–",
                            number(r.get("seconds_per_clip"))] for r in results["rows"]], fmt=str)
    cj = ", ".join(f"{k} {v:.2f}" for k, v in results["coarse_judge_real_accuracy"].items())
    coarse = markdown_table(["guidance", *scores[:3]],
                            [[r["guidance"], *(r[k] for k in scores[:3])] for r in results["coarse"]])
    negative = markdown_table(
        ["negative instrument (requests that are not piano)", "judged piano", "acc_instrument", "NFE",
         "s/clip"],
        [[r["guidance"], f"{r['piano']:.2f}", f"{r['acc_instrument']:.2f}", r["nfe"],
          f"{r['seconds_per_clip']:.2f}"] for r in results["negative"]], fmt=str)
    return (f"{results['n']} held-out requests, {results['steps']} Euler steps; judge accuracy on real "
            f"held-out clips: {judge}\n\n{main}\n"
            f"Coarse judge (log-mels at the model's resolution; accuracy on real held-out clips: {cj})\n\n"
            f"{coarse}\n{negative}")


def main() -> None:
    p = report_args(__doc__.splitlines()[0], 48, steps=30)
    p.add_argument("--checkpoint", type=Path, default=CHECKPOINTS / "music_flow.ckpt")
    p.add_argument("--samples", type=Path, default=Path("outputs/music"))
    args = p.parse_args()
    torch.set_num_threads(1)
    results, md = music_section(args.out, n=args.n, steps=args.steps, checkpoint=args.checkpoint,
                                samples=args.samples)
    write_report(args.out, "audio_music", results, md)


if __name__ == "__main__":
    main()
