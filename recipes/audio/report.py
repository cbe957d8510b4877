"""Score the shipped audio checkpoints under guidance and record the results for docs/audio.md.

    python recipes/audio/report.py [--n 120] [--steps 20] [--out docs/results] [--music]

Spoken words (every shipped word model): a sweep of the CFG weight on ``word`` (w = 1 … 8: word
accuracy and Fréchet distance on the judge's features), multi-condition guidance over word +
speaker (independent, nested, joint) against single-condition CFG (speaker accuracy and
resemblyzer similarity), interval guidance, a negative speaker; NFE and seconds per clip for every
row; the judge on real and on representation-reconstructed real clips (Griffin-Lim, codec), and
the codec's reconstruction figures (SI-SNR, mel distance, bitrate). Writes ``audio.json``,
``audio.md`` and spectrogram PNGs into ``--out``. ``--music`` adds the music section
(``recipes/audio/report_music.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from framework.core.atomic import atomic_write
from framework.core.conditions import Conditions
from framework.evaluation import markdown_table, random_requests, score_guidance
from framework.evaluation.tables import number
from framework.training.module import load
from modalities.audio.plugin import words_judge
from modalities.audio.speech import SPEAKERS, WORDS, load_words

HERE = Path(__file__).resolve().parent
CHECKPOINTS = HERE / "checkpoints"
WORD_MODELS = {"words_flow": CHECKPOINTS / "words_flow.ckpt", "words_ar": CHECKPOINTS / "words_ar.ckpt"}
SWEEP_W = (1, 2, 3, 4, 5, 6, 7, 8)
TABLE = {
    "no guidance (w=1)": "cond(word, speaker)",
    "cfg word only, w=3": "cfg(word, 3)",
    "cfg joint (word, speaker), w=3": "cfg((word, speaker), 3)",
    "independent word 3, speaker 2": "independent([word, speaker], [3, 2])",
    "nested word 3, speaker 2": "nested([word, speaker], [3, 2])",
    "interval cfg word w=4, τ∈[0.2, 0.8]": "interval(word, 4, 0.2, 0.8)",
}
NEG_SPEAKER = "en"  # British English (eSpeak's "en"): steered away from
NEGATIVE = {"word only (w=1)": "cond(word)",
            f"word, not speaker {NEG_SPEAKER} (negative w=3)": f"negative(word, speaker, {NEG_SPEAKER}, 3)"}


def _steps(model, steps: int) -> int:
    """Autoregressive models sample one step per token frame; the others take ``steps``."""
    return model.shape[-1] if model.hparams.family == "autoregressive" else steps


def guidance_rows(name: str, model, judge, conds: Conditions, requested: dict[str, Any], weights,
                  table: dict[str, str], steps: int, seed: int) -> tuple[list[dict], list[dict]]:
    """The CFG-on-word sweep over ``weights`` (scored on the word alone) and the ``table`` of
    expressions (scored on word and speaker), each row with seconds per clip."""
    n = len(requested["word"])
    sweep = []
    for w in weights:
        g = "cond(word)" if w == 1 else f"cfg(word, {w})"
        row, _ = score_guidance(model, judge, conds, {"word": requested["word"]}, f"w={w}", g, steps, seed)
        sweep.append({**row, "w": w, "seconds_per_clip": row["seconds"] / n})
        print(f"  {name} sweep w={w}: acc_word {row['acc_word']:.2f} fd {row['fd']:.1f}", flush=True)
    rows = []
    for label, g in table.items():
        row, _ = score_guidance(model, judge, conds, requested, label, g, steps, seed)
        rows.append({**row, "seconds_per_clip": row["seconds"] / n})
        print(f"  {name} {label}: acc_word {row['acc_word']:.2f} acc_speaker {row['acc_speaker']:.2f}",
              flush=True)
    return sweep, rows


def reconstruction_row(label: str, judge, codec, audio: torch.Tensor, want: dict[str, Any],
                       **extra: Any) -> dict[str, Any]:
    """The judge, SI-SNR and mel distance of ``audio`` ``[N, 1, S]`` rebuilt by ``codec`` (encode then
    decode), with the seconds per clip that took."""
    from modalities.audio.metrics import mel_distance, si_snr

    start = time.perf_counter()
    rebuilt = codec.decode(codec.encode(audio))
    seconds = (time.perf_counter() - start) / len(audio)
    return {"clips": label, **judge.evaluate(rebuilt, want),
            "si_snr_db": float(si_snr(rebuilt, audio).mean()),
            "mel_distance": float(mel_distance(rebuilt, audio).mean()), **extra, "seconds_per_clip": seconds}


def word_section(name: str, model, judge, n: int, steps: int, seed: int, out: Path) -> dict[str, Any]:
    """Sweep, multi-condition table and negative speaker for one word model."""
    steps = _steps(model, steps)
    requested = random_requests(model.specs, ["word", "speaker"], n, seed)
    conds = Conditions.from_raw(model.specs, dict(requested), n)  # pitch is left null (not requested)
    sweep, rows = guidance_rows(name, model, judge, conds, requested, SWEEP_W, TABLE, steps, seed)
    neg_id = SPEAKERS.index(NEG_SPEAKER)
    neg = []
    for label, g in NEGATIVE.items():
        start = time.perf_counter()
        res = model.sample(conds, g, steps=steps, seed=seed)
        with torch.no_grad():
            heard = judge.classifier(res.media)
        from modalities.audio.metrics import speaker_embed

        sim = speaker_embed(res.media) @ judge.speaker_centroids[neg_id]  # resemblyzer cosine to "en"
        neg.append({"guidance": label, "expression": g,
                    "judged_speaker_en": float((heard["speaker"].argmax(-1) == neg_id).float().mean()),
                    "similarity_to_en": float(sim.mean()),
                    "acc_word": float((heard["word"].argmax(-1) == requested["word"]).float().mean()),
                    "nfe": res.nfe, "seconds_per_clip": (time.perf_counter() - start) / n})
    # the picture shows the best guided expression: word accuracy first, then all conditions right
    best = max(rows[1:], key=lambda r: (r["acc_word"], r["acc_all"]))
    picture(model, out / f"audio_{name}.png", steps, seed, guided=best["expression"])
    return {"steps": steps, "sweep": sweep, "rows": rows, "negative": neg, "best": best["expression"]}


def picture(model, path: Path, steps: int, seed: int, guided: str = "cfg(word, 4)") -> Path:
    """Spectrograms of every word (columns): a real held-out clip, then generated clips of the same
    word and speaker without guidance and under ``guided`` (rows)."""
    from modalities.audio.writers import spectrogram_grid

    held = load_words(500, 1001)
    first = [int((held.word == i).nonzero()[0]) for i in range(len(WORDS))]
    real = held.audio[first]
    request = {"word": list(WORDS), "speaker": [SPEAKERS[int(held.speaker[i])] for i in first]}
    rows = [real]
    for g in ("cond(word, speaker)", guided):
        rows.append(model.sample(request, g, n=len(WORDS), steps=steps, seed=seed).media)
    labels = ["real (held out)", "generated, no guidance", f"generated, {guided}"]
    title = (f"spoken words: a real clip and generated clips of the same word and speaker "
             f"({steps} Euler steps, Griffin-Lim)")
    spectrogram_grid(torch.cat(rows), rows=labels, cols=list(WORDS), title=title).save(path)
    return path


def reconstruction(judge, n: int) -> dict[str, Any]:
    """The judge on held-out real clips and on their reconstructions through each representation."""
    from modalities.audio.codec import EncodecCodec, resolve_path
    from modalities.audio.mel import LogMel

    held = load_words(500, 1001)
    audio, labels = held.audio[:n], {k: v[:n] for k, v in held.conditions().items()}
    want = {"word": labels["word"], "speaker": labels["speaker"]}
    rows = [{"clips": "real held-out clips", **judge.evaluate(audio, want)}]
    rows.append(reconstruction_row("mel → Griffin-Lim (32 iterations)", judge, LogMel(), audio, want))
    # judge sanity: clips without a word must not be recognised (chance is 0.10)
    g = torch.Generator().manual_seed(0)
    for label, fake in (("white noise (no word)", 0.3 * torch.randn(audio.shape, generator=g)),
                        ("silence (no word)", torch.zeros_like(audio))):
        rows.append({"clips": label, **judge.evaluate(fake, want)})
    if (resolve_path("recipes/audio/checkpoints/codec") / "config.json").exists():
        codec = EncodecCodec()
        stats = json.loads((resolve_path(codec.path) / "polyguide_codec.json").read_text())
        label = f"codec tokens ({codec.codebooks} × 256 codes, {codec.frames} frames/s)"
        bitrate = stats.get("bitrate_bps")
        rows.append(reconstruction_row(label, judge, codec, audio, want, bitrate_bps=bitrate))
    return {"n": n, "rows": rows, "judge_real_accuracy": judge.real_accuracy}


def reconstruction_table(rows: list[dict[str, Any]], word: str = ".2f") -> str:
    """The judge on real clips and their reconstructions; ``word``: the format of ``acc_word``."""
    header = ["clips", "acc_word", "acc_speaker", "fd", "SI-SNR (dB)", "mel distance", "bitrate (bit/s)",
              "s/clip"]
    return markdown_table(header, [[r["clips"], format(r["acc_word"], word), number(r["acc_speaker"]),
                                    number(r["fd"]), number(r.get("si_snr_db")),
                                    number(r.get("mel_distance")), r.get("bitrate_bps") or "–",
                                    number(r.get("seconds_per_clip"))] for r in rows], fmt=str)


def sweep_table(rows: list[dict[str, Any]], seconds: str = ".2f") -> str:
    """A CFG weight sweep on the word; ``seconds``: the format of seconds per clip."""
    return markdown_table(["CFG weight on word", "acc_word", "fd", "diversity", "NFE", "s/clip"],
                          [[r["w"], f"{r['acc_word']:.2f}", number(r["fd"]), number(r["diversity"]), r["nfe"],
                            format(r["seconds_per_clip"], seconds)] for r in rows], fmt=str)


def guidance_table(rows: list[dict[str, Any]], seconds: str = ".2f") -> str:
    """One row per guidance expression; ``seconds``: the format of seconds per clip."""
    header = ["guidance", "expression", "acc_word", "acc_speaker", "acc_all", "speaker_sim", "fd", "NFE",
              "s/clip"]
    return markdown_table(header, [[r["guidance"], f"`{r['expression']}`", f"{r['acc_word']:.2f}",
                                    f"{r['acc_speaker']:.2f}", f"{r['acc_all']:.2f}",
                                    number(r.get("speaker_sim")), number(r["fd"]), r["nfe"],
                                    format(r["seconds_per_clip"], seconds)] for r in rows], fmt=str)


def markdown(results: dict[str, Any]) -> str:
    """The tables of docs/audio.md."""
    rec = results["reconstruction"]
    parts = [f"### Judge and representations ({rec['n']} held-out real clips)\n\n"
             + reconstruction_table(rec["rows"])]
    for name, sec in results["models"].items():
        negative = markdown_table(
            ["negative speaker", f"judged as {NEG_SPEAKER}", f"speaker similarity to {NEG_SPEAKER}",
             "acc_word", "NFE", "s/clip"],
            [[f"`{r['expression']}`", f"{r['judged_speaker_en']:.2f}", f"{r['similarity_to_en']:.3f}",
              f"{r['acc_word']:.2f}", r["nfe"], f"{r['seconds_per_clip']:.2f}"] for r in sec["negative"]],
            fmt=str)
        parts += [f"### {name} ({results['n']} random requests, {sec['steps']} steps)\n\n"
                  + sweep_table(sec["sweep"]), guidance_table(sec["rows"]), negative]
    if results.get("music_markdown"):
        parts += ["### Music\n\n" + results["music_markdown"] + "\n"]
    return "\n".join(parts)


def run(out: Path, n: int, steps: int, seed: int = 0, music: bool = False) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    judge = words_judge(CHECKPOINTS)
    results: dict[str, Any] = {"n": n, "reconstruction": reconstruction(judge, min(n, 200)), "models": {}}
    for name, path in WORD_MODELS.items():
        if path.exists():
            print(f"{name}: {path}", flush=True)
            results["models"][name] = word_section(name, load(str(path)), judge, n, steps, seed, out)
    # music: the music section (audio-music's recipes/audio/report_music.py)
    if music:
        sys.path.insert(0, str(HERE))
        from report_music import music_section

        results["music"], results["music_markdown"] = music_section(out)
    return results


def report_args(description: str, n: int, seed: int | None = None, steps: int | None = 20
                ) -> argparse.ArgumentParser:
    """The options the audio reports share: ``--n`` requests, ``--seed`` and sampling ``--steps``
    (each only if it has a default here), and ``--out`` (default ``docs/results``)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--n", type=int, default=n)
    if seed is not None:
        p.add_argument("--seed", type=int, default=seed)
    if steps is not None:
        p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--out", type=Path, default=Path("docs/results"))
    return p


def write_report(out: Path, name: str, results: Any, md: str, indent: int = 2) -> None:
    """Write ``out/<name>.json`` and ``out/<name>.md`` (each atomically) and print the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / f"{name}.json", lambda tmp: tmp.write_text(json.dumps(results, indent=indent)))
    atomic_write(out / f"{name}.md", lambda tmp: tmp.write_text(md))
    print(md)


def main() -> None:
    p = report_args(__doc__.splitlines()[0], 120, seed=0)
    p.add_argument("--music", action="store_true", help="add the music section (report_music.py)")
    args = p.parse_args()
    torch.set_num_threads(1)
    results = run(args.out, args.n, args.steps, args.seed, args.music)
    write_report(args.out, "audio", results, markdown(results))


if __name__ == "__main__":
    main()
