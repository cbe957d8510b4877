"""Score the shipped codec and the autoregressive word model on its tokens, for docs/audio.md.

    python recipes/audio/report_codec.py [--n 100] [--out docs/results]

Codec (``recipes/audio/checkpoints/codec``) on held-out real clips (render seed 1001, which no
recipe trains on): SI-SNR, mel distance, bitrate, seconds per clip, and the word judge's accuracy
on the originals and on their reconstructions through each layout (tokens; latents quantised as
the representation decodes them; latents decoded unquantised). ``words_ar`` (if shipped): a sweep
of CFG on ``word`` (w = 1 … 8: word accuracy, Fréchet distance on the judge's features, NFE,
seconds per clip) and multi-condition guidance over word + speaker against the unguided baseline.
Writes ``audio_codec.json``, ``audio_codec.md`` and ``audio_codec_ar.png`` (spectrograms: real,
codec-reconstructed, generated) into ``--out``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from report import TABLE as WORD_TABLE
from report import (  # beside this script (run as a script)
    guidance_rows,
    guidance_table,
    reconstruction_row,
    reconstruction_table,
    report_args,
    sweep_table,
    write_report,
)

from framework.core.conditions import Conditions
from framework.evaluation import random_requests
from framework.training.module import load
from modalities.audio.codec import STATS_FILE, EncodecCodec, resolve_path
from modalities.audio.plugin import words_judge
from modalities.audio.speech import WORDS, load_words

HERE = Path(__file__).resolve().parent
CHECKPOINTS = HERE / "checkpoints"
CODEC = "recipes/audio/checkpoints/codec"
AR = CHECKPOINTS / "words_ar.ckpt"
SWEEP_W = (1, 2, 3, 4, 6, 8)
# the word report's guidance table without its interval row
TABLE = {k: v for k, v in WORD_TABLE.items() if not v.startswith("interval")}
PICTURE_WORDS = ("zero", "three", "seven", "nine")


def codec_section(judge, n: int) -> dict[str, Any]:
    """The judge on ``n`` held-out real clips and on their reconstructions by the codec."""
    held = load_words(500, 1001)
    audio, labels = held.audio[:n], {k: v[:n] for k, v in held.conditions().items()}
    want = {"word": labels["word"], "speaker": labels["speaker"]}
    stats = json.loads((resolve_path(CODEC) / STATS_FILE).read_text())
    rows = [{"clips": "real held-out clips (reference)", **judge.evaluate(audio, want)}]
    tokens = EncodecCodec(CODEC)
    n_params = sum(p.numel() for p in tokens.model.parameters())
    ways = {
        f"codec tokens ({tokens.codebooks} × {tokens.vocab_size} codes, {tokens.frames} frames/s)": tokens,
        "codec latents, quantised (as the latents layout decodes)": EncodecCodec(CODEC, layout="latents"),
        "codec latents, not quantised": EncodecCodec(CODEC, layout="latents", quantize_latents=False),
    }
    for label, codec in ways.items():
        bitrate = stats.get("bitrate_bps") if codec.layout == "tokens" else None
        rows.append(r := reconstruction_row(label, judge, codec, audio, want, bitrate_bps=bitrate))
        print(f"  {label}: acc_word {r['acc_word']:.3f} SI-SNR {r['si_snr_db']:.1f} dB", flush=True)
    lat, few = EncodecCodec(CODEC, layout="latents"), audio[:8]
    same = torch.allclose(lat.decode(lat.encode(few)), tokens.decode(tokens.encode(few)), atol=1e-4)
    return {"n": n, "rows": rows, "parameters": n_params, "bitrate_bps": stats.get("bitrate_bps"),
            "frame_rate": stats.get("frame_rate"), "latents_quantised_equal_tokens": bool(same),
            "judge_real_accuracy": judge.real_accuracy}


def ar_section(model, judge, n: int, seed: int) -> dict[str, Any]:
    """CFG sweep on word and multi-condition guidance for the AR model (one step per frame)."""
    steps = model.shape[-1]
    requested = random_requests(model.specs, ["word", "speaker"], n, seed)
    conds = Conditions.from_raw(model.specs, dict(requested), n)  # pitch left null (not requested)
    sweep, rows = guidance_rows("words_ar", model, judge, conds, requested, SWEEP_W, TABLE, steps, seed)
    return {"steps": steps, "decoding_steps": steps + model.family.codebooks - 1, "sweep": sweep,
            "rows": rows}


def picture(path: Path, model, seed: int) -> Path:
    """Spectrograms of four words: real, codec-reconstructed, generated (w=1 and CFG w=4)."""
    from modalities.audio.writers import spectrogram_grid

    held = load_words(500, 1001)
    real = torch.cat([held.audio[held.word == WORDS.index(w)][:1] for w in PICTURE_WORDS])
    codec = EncodecCodec(CODEC)
    rows, names = [real, codec.decode(codec.encode(real))], ["real", "codec (tokens)"]
    if model is not None:
        for g, name in (("cond(word)", "words_ar, w=1"), ("cfg(word, 4)", "words_ar, cfg word w=4")):
            rows.append(model.sample({"word": list(PICTURE_WORDS)}, g, n=len(PICTURE_WORDS),
                                     steps=model.shape[-1], seed=seed).media)
            names.append(name)
    spectrogram_grid(torch.cat(rows), rows=names, title=" | ".join(PICTURE_WORDS)).save(path)
    return path


def markdown(results: dict[str, Any]) -> str:
    """The tables of the codec section of docs/audio.md."""
    c = results["codec"]
    parts = [f"#### Codec reconstruction ({c['n']} held-out real clips)\n\n"
             + reconstruction_table(c["rows"], word=".3f")]
    if "ar" in results:
        a = results["ar"]
        parts += [f"#### words_ar ({results['n']} random requests, {a['steps']} frames = "
                  f"{a['decoding_steps']} decoding steps)\n\n" + sweep_table(a["sweep"], seconds=".3f"),
                  guidance_table(a["rows"], seconds=".3f")]
    return "\n".join(parts)


def run(out: Path, n: int, seed: int = 0) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    judge = words_judge(CHECKPOINTS)
    print("codec", flush=True)
    results: dict[str, Any] = {"n": n, "codec": codec_section(judge, n)}
    model = load(str(AR)) if AR.exists() else None
    if model is not None:
        print("words_ar", flush=True)
        results["ar"] = ar_section(model, judge, n, seed)
    picture(out / "audio_codec_ar.png", model, seed)
    return results


def main() -> None:
    p = report_args(__doc__.splitlines()[0], 100, seed=0, steps=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    results = run(args.out, args.n, args.seed)
    write_report(args.out, "audio_codec", results, markdown(results))


if __name__ == "__main__":
    main()
