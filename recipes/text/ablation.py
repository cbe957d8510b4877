"""Why the masked text model wrote non-words, and what each change bought (docs/text.md's ablation).

    python recipes/text/ablation.py [--n 60] [--rows LABEL ...] [--out docs/results]

Each row samples the same ``--n`` genre requests (balanced, seed 0) under ``cfg(genre, 3)`` with one
checkpoint and one sampler setting, and scores them with the text judge's fluency measures
(:mod:`modalities.text.fluency`): words of the plays, 4-grams of the plays, perplexity under the
shipped AR model and under a 3-gram model of the plays, genre by our judge and by the independent
one. The sampler is changed on the loaded model (``model.family``), the training on the checkpoint:
``shakespeare_masked_scratch`` (the earlier recipe: 2,500 steps from scratch) and
``shakespeare_masked`` (adapted from the AR model). Writes ``text_ablation.json`` (rows already
there and not rerun are kept) and ``text_ablation.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from framework.core import plugins
from framework.training.module import load

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
GUIDANCE = "cfg(genre, 3)"
SCRATCH, ADAPTED = "shakespeare_masked_scratch", "shakespeare_masked"
RANDOM_T1 = {"order": "random", "temperature": 1.0, "top_k": None, "remask": 0.0}
TUNED = {"order": "random", "temperature": 0.8, "top_k": 40, "remask": 0.0}
SHIPPED = {**TUNED, "order": "left_to_right"}  # shakespeare_masked.yaml's family_args
#: label → (checkpoint, family settings, steps)
ROWS: dict[str, tuple[str, dict, int]] = {
    "scratch · random order, T=1, 32 steps (as shipped before)": (SCRATCH, RANDOM_T1, 32),
    "scratch · random order, T=1, 64 steps (1 token per step)": (SCRATCH, RANDOM_T1, 64),
    "scratch · confidence order (MaskGIT), T=1": (SCRATCH, {**RANDOM_T1, "order": "confidence"}, 64),
    "scratch · random order, T=0.8, top-k 40": (SCRATCH, TUNED, 64),
    "scratch · T=0.8, top-k 40, ReMDM remasking η=0.05": (SCRATCH, {**TUNED, "remask": 0.05}, 64),
    "AR-adapted · random order, T=1": (ADAPTED, RANDOM_T1, 64),
    "AR-adapted · random order, T=0.8, top-k 40": (ADAPTED, TUNED, 64),
    "AR-adapted · T=0.8, top-k 40, 32 steps": (ADAPTED, TUNED, 32),
    "AR-adapted · confidence order, T=0.8, top-k 40": (ADAPTED, {**TUNED, "order": "confidence"}, 64),
    "AR-adapted · left-to-right order, T=0.8, top-k 40 (shipped)": (ADAPTED, SHIPPED, 64),
    "AR-adapted · T=0.8, top-k 40, ReMDM remasking η=0.05": (ADAPTED, {**TUNED, "remask": 0.05}, 64),
    "AR-adapted · random order, T=0.6, top-k 20": (ADAPTED, {**TUNED, "temperature": 0.6, "top_k": 20}, 64),
}


def run(out: Path, n: int, labels: list[str]) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from report import score  # this folder's report.py

    out.mkdir(parents=True, exist_ok=True)
    judge = plugins.get("text").judge({}, None, CHECKPOINTS)
    saved = out / "text_ablation.json"
    results = json.loads(saved.read_text()) if saved.exists() else {"n": n, "guidance": GUIDANCE, "rows": {}}
    models: dict = {}
    for label in labels:
        name, settings, steps = ROWS[label]
        if name not in models:
            models[name] = load(str(CHECKPOINTS / f"{name}.ckpt"))
        model = models[name]
        for key, value in settings.items():
            setattr(model.family, key, value)
        row = score(model, judge, GUIDANCE, n, steps)
        results["rows"][label] = {"checkpoint": name, "settings": settings, "steps": steps, **row}
        print(f"{label}: words of the plays {row['vocab_share']:.3f}, 4-grams {row['ngram4_overlap']:.3f}, "
              f"ppl AR {row['ppl_ar']:.1f}, 3-gram {row['ppl_ngram']:.0f}, genre {row['acc_genre']:.2f} / "
              f"{row['acc_genre_indep']:.2f}", flush=True)
        saved.write_text(json.dumps(results, indent=2))
    results["rows"] = {k: results["rows"][k] for k in ROWS if k in results["rows"]}
    saved.write_text(json.dumps(results, indent=2))
    (out / "text_ablation.md").write_text(table(results))
    return results


def table(results: dict) -> str:
    md = [f"{results['n']} samples per row (genres balanced, seed 0), `{results['guidance']}`.", "",
          "| model · sampler | words of the plays | 4-grams of the plays | ppl (AR) | ppl (3-gram) | "
          "genre (ours) | genre (indep.) | distinct-2 | words/sample | NFE |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for label, r in results["rows"].items():
        md.append(f"| {label} | {r['vocab_share']:.3f} | {r['ngram4_overlap']:.3f} | {r['ppl_ar']:.1f} | "
                  f"{r['ppl_ngram']:.0f} | {r['acc_genre']:.2f} | {r['acc_genre_indep']:.2f} | "
                  f"{r['distinct_2']:.2f} | {r['words_per_sample']:.1f} | {r['nfe']} |")
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("docs/results"))
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS), metavar="LABEL")
    args = ap.parse_args()
    run(args.out, args.n, args.rows)
    print((args.out / "text_ablation.md").read_text())
