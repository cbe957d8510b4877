"""Word accuracy per word, by our judge and by the independent DTW matcher, at 20+ clips a word.

    python recipes/audio/report_words.py --model words_ar [--per-word 20] [--seed 9100] \
        [--guidance "cfg(word, 2)" ...] [--temperature 1.0 0.7] [--out docs/results]

Every word is requested ``--per-word`` times (speakers and pitch bins drawn at random, seed
``--seed``), so a word's figure moves by 1/``per-word`` per clip (``report_pitch.py`` has about
five a word). Per guidance form (and, for the autoregressive model, per sampling temperature):
per-word accuracy by the judge (``judge-words.pt``, trained on real renders) and by the DTW
template matcher (:mod:`modalities.audio.template`, real renders of seed 2000, no training),
the lowest word of each, and whether every word reaches 0.95 by both.

Writes ``audio_words_<model>.{json,md}`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report_pitch import CHECKPOINTS, words_scores

from framework.core.conditions import Conditions
from framework.training.module import load
from modalities.audio.plugin import words_judge
from modalities.audio.speech import WORDS, load_words
from modalities.audio.template import TemplateMatcher

DEFAULT = ["cond(word, speaker, pitch)", "cfg(word, 2)", "cfg(word, 3)", "cfg((word, speaker, pitch), 3)",
           "nested([word, speaker], [3, 2])"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="words_ar")
    p.add_argument("--per-word", type=int, default=20)
    p.add_argument("--seed", type=int, default=9100)
    p.add_argument("--steps", type=int, default=20,
                   help="flow steps (the AR model always samples its length)")
    p.add_argument("--guidance", nargs="*", default=DEFAULT)
    p.add_argument("--temperature", type=float, nargs="*", default=[None])
    p.add_argument("--out", type=Path, default=Path("docs/results"))
    args = p.parse_args()
    judge = words_judge(CHECKPOINTS)
    refs = load_words(300, 2000)
    matcher = TemplateMatcher(refs.audio, refs.word)
    n = args.per_word * len(WORDS)
    g = torch.Generator().manual_seed(args.seed)
    raw = {"word": torch.arange(len(WORDS)).repeat_interleave(args.per_word),
           "speaker": torch.randint(0, 15, (n,), generator=g),
           "pitch": torch.randint(0, 3, (n,), generator=g)}
    model = load(CHECKPOINTS / f"{args.model}.ckpt").eval()
    ar = model.hparams.family == "autoregressive"
    conds = Conditions.from_raw(model.specs, dict(raw), n)
    rows = []
    for temp in args.temperature if ar else [None]:
        if temp is not None:
            model.family.temperature = float(temp)
        for expr in args.guidance:
            t0 = time.perf_counter()
            steps = model.shape[-1] if ar else args.steps
            wave = model.sample(conds, expr, steps=steps, seed=args.seed).media
            secs = time.perf_counter() - t0
            s = words_scores(wave, raw["word"], judge, matcher)
            both = [min(a, b) for a, b in zip(s["per_word_judge"], s["per_word_dtw"], strict=True)]
            rows.append({"model": args.model, "expression": expr,
                         "temperature": float(model.family.temperature) if ar else None,
                         "sample_seconds": secs, "min_word_both": min(both), **s})
            print({k: v for k, v in rows[-1].items() if not k.startswith("per")}, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    res = {"model": args.model, "per_word": args.per_word, "seed": args.seed, "rows": rows}
    (args.out / f"audio_words_{args.model}.json").write_text(json.dumps(res, indent=1))
    lines = [f"`{args.model}`: {args.per_word} requests per word (seed {args.seed}); judge / DTW", "",
             "| guidance | temperature | all | " + " | ".join(WORDS) + " | every word ≥ 0.95 by both |",
             "|---|---|---|" + "---|" * (len(WORDS) + 1)]
    for r in rows:
        cells = [f"{a:.2f} / {b:.2f}" for a, b in zip(r["per_word_judge"], r["per_word_dtw"], strict=True)]
        temp = "–" if r["temperature"] is None else f"{r['temperature']:g}"
        lines.append(f"| `{r['expression']}` | {temp} | {r['acc_word_judge']:.2f} / "
                     f"{r['acc_word_dtw']:.2f} | "
                     + " | ".join(cells) + f" | {'yes' if r['min_word_both'] >= 0.95 else 'no'} |")
    text = "\n".join(lines) + "\n"
    (args.out / f"audio_words_{args.model}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
