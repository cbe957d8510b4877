"""Score the shipped Shakespeare checkpoints under guidance and record the results for docs/text.md.

    python recipes/text/report.py [--n 240] [--seed 0] [--out docs/results]

First one fluency table: both families, unguided (``cond(genre)``) and guided (``cfg(genre, 3)``),
on the same ``--n-fluency`` requests and seed, beside real passages of the held-out plays: genre
accuracy by our judge and by an independent one, the share of words that are words of the plays,
4-gram overlap with the plays, perplexity under the shipped AR model and under a Kneser–Ney word
3-gram model of the plays (:mod:`modalities.text.fluency`), distinct-2; and the words each model
invented. Then, per model: held-out perplexity (AR: exact; masked: the MDLM bound), both per text
token (end token included; the padding's cost is charged to the text, so the figures are upper
bounds); the same measures against the CFG weight and for negative, independent, nested and double
guidance; contrastive decoding (the step-500 checkpoint as the amateur) against plain sampling;
NFE and tokens/s for each. Writes ``text.json`` and ``text.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from framework.core import plugins
from framework.core.conditions import Conditions
from framework.evaluation import score_guidance
from framework.training.module import load
from modalities.text.data import ShakespeareData
from modalities.text.fluency import invented_words, real_reference

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
WEIGHTS = (1, 1.5, 2, 3, 5)
EXTRA = {
    "not tragedy (negative w=3)": "negative(genre, genre, tragedy, 3)",
    "independent genre 3, speaker 2": "independent([genre, speaker], [3, 2])",
    "nested genre 3, speaker 2": "nested([genre, speaker], [3, 2])",
    "double α=3, β=2": "double(genre, speaker, 3, 2)",
}


@torch.no_grad()
def perplexity(model, loader, masked: bool) -> float:
    """exp(total NLL / text tokens) over a loader (text tokens: everything but padding)."""
    total, tokens = 0.0, 0
    pad = model.codec.pad_id
    for i, batch in enumerate(loader):
        x, conds = model._batch(batch)
        if masked:
            per_seq = model.family.nll_bound(model.backbone, x, conds, samples=4,
                                             generator=torch.Generator().manual_seed(i)) * x.shape[1]
        else:
            per_seq = model.family.nll(model.backbone, x, conds) * x.shape[1]
        total += float(per_seq.sum())
        tokens += int((x != pad).sum())
    return math.exp(total / tokens)


def requests(model, n: int, seed: int = 0, speakers: bool = False) -> tuple[Conditions, dict]:
    """``n`` genre requests (balanced), optionally each with a speaker of that genre's plays."""
    genre = torch.arange(n) % 3
    raw = {"genre": genre}
    if speakers:  # a speaker of that genre's plays (comedy FALSTAFF, history GLOUCESTER, tragedy HAMLET)
        labels = model.specs["speaker"].labels
        pick = torch.tensor([labels.index(s) for s in ("FALSTAFF", "GLOUCESTER", "HAMLET")])
        raw["speaker"] = pick[genre]
    return Conditions.from_raw(model.specs, raw, n), {"genre": genre}


def score(model, judge, guidance: str, n: int, steps: int, weak=None, speakers: bool = False,
          keep_texts: bool = False, seed: int = 0) -> dict:
    conds, requested = requests(model, n, speakers=speakers)
    row, out = score_guidance(model, judge, conds, requested, guidance, guidance, steps, seed=seed, weak=weak)
    tokens = int((out.samples != model.codec.pad_id).sum())
    texts = model.codec.decode_text(out.samples)
    row = {**row, "tokens_per_s": tokens / row["seconds"], "example": texts[:3],
           "words_per_sample": sum(len(t.split()) for t in texts) / len(texts)}
    return {**row, "texts": texts} if keep_texts else row


def fluency_table(judge, n: int, models: list[str], seed: int = 0) -> dict:
    """Unguided and guided rows of every model on the same ``n`` requests, and real passages."""
    ref = real_reference(n)
    genre = torch.arange(n) % 3
    rows = {"real passages (held-out plays)": {**judge.evaluate(ref, {"genre": genre}), "example": ref[:3],
                                               "words_per_sample": sum(len(t.split()) for t in ref) / n}}
    invented = {}
    for name in models:
        model = load(str(CHECKPOINTS / f"{name}.ckpt"))
        for label, g in (("unguided", "cond(genre)"), ("guided cfg w=3", "cfg(genre, 3)")):
            r = score(model, judge, g, n, model.codec.length, keep_texts=True, seed=seed)
            texts = r.pop("texts")
            rows[f"{name} · {label}"] = r
            words = invented_words(texts)
            invented[f"{name} · {label}"] = {"invented": sum(words.values()),
                                             "words": sum(len(t.split()) for t in texts),
                                             "most_common": words.most_common(12)}
    return {"n": n, "seed": seed, "rows": rows, "invented": invented}


def run(out: Path, n: int, models: list[str], n_fluency: int = 120, fluency: bool = True,
        seed: int = 0) -> dict:
    """Score ``models``; results of other models already in ``text.json`` are kept, and so is its
    fluency table (of both shipped models) when ``fluency`` is False."""
    out.mkdir(parents=True, exist_ok=True)
    judge = plugins.get("text").judge({}, None, CHECKPOINTS)
    saved = out / "text.json"
    from modalities.text.fluency import independent_judge

    results: dict = {"n": n, "judge_real_accuracy": judge.real_accuracy,
                     "independent_real_accuracy": independent_judge().real_accuracy, "models": {}}
    earlier = json.loads(saved.read_text()) if saved.exists() else {"models": {}}
    results["models"] = {k: v for k, v in earlier["models"].items() if k not in models}
    if fluency:
        results["fluency"] = fluency_table(judge, n_fluency, ["shakespeare_ar", "shakespeare_masked"], seed)
    elif "fluency" in earlier:
        results["fluency"] = earlier["fluency"]
    for name in models:
        masked = name.endswith("masked")
        model = load(str(CHECKPOINTS / f"{name}.ckpt"))
        dm = ShakespeareData(length=model.codec.length, tokenizer=model.hparams.representation["tokenizer"],
                             batch_size=64)
        rows = {"perplexity": perplexity(model, dm.val_dataloader(), masked)}
        # the masked model re-reads all 64 positions every step (no KV cache): fewer samples and
        # rows, or this report takes hours on 2 CPU cores; one token per step, as the AR model
        steps = model.codec.length
        k = n // 4 if masked else n
        extra = {k2: v for k2, v in EXTRA.items() if not masked or k2.startswith("independent")}
        rows["n"], rows["steps"] = k, steps
        rows["cfg"] = {w: score(model, judge, f"cfg(genre, {w})" if w != 1 else "cond(genre)", k, steps)
                       for w in (WEIGHTS if not masked else (1, 3, 5))}
        rows["extra"] = {label: score(model, judge, g, k, steps, speakers="speaker" in g)
                         for label, g in extra.items()}
        if not masked:
            weak = load(str(CHECKPOINTS / "shakespeare_ar_weak.ckpt"))
            rows["contrastive"] = {"plain (genre-conditional)": score(model, judge, "cond(genre)", n, steps)}
            for beta in (0.5, 1):
                rows["contrastive"][f"contrastive β={beta:g}, α=0.1"] = score(
                    model, judge, f"contrastive(genre, {beta}, 0.1)", n, steps, weak)
        results["models"][name] = rows
        print(f"{name}: perplexity {rows['perplexity']:.1f}")
    results["models"] = dict(sorted(results["models"].items()))
    saved.write_text(json.dumps(results, indent=2))
    (out / "text.md").write_text(tables(results))
    return results


FLUENCY = ("| {label} | {acc_genre:.2f} | {acc_genre_indep:.2f} | {vocab_share:.3f} | {ngram4_overlap:.3f} | "
           "{ppl_ar:.1f} | {ppl_ngram:.0f} | {distinct_2:.2f} | {words_per_sample:.1f} |")
FLUENCY_HEAD = ["| samples | genre (our judge) | genre (independent) | words of the plays "
                "| 4-grams of the plays | perplexity (AR model) | perplexity (3-gram model) | distinct-2 "
                "| words/sample |",
                "|---|---|---|---|---|---|---|---|---|"]


def _row(label: str, r: dict) -> str:
    return (f"| {label} | {r['acc_genre']:.2f} | {r['acc_genre_indep']:.2f} | {r['vocab_share']:.3f} | "
            f"{r['ngram4_overlap']:.3f} | {r['ppl_ar']:.1f} | {r['ppl_ngram']:.0f} | {r['distinct_2']:.2f} | "
            f"{r['nfe']} | {r['nfe_per_step']:.2f} | {r['tokens_per_s']:.0f} |")


def tables(results: dict) -> str:
    head = ["| guidance | genre (ours) | genre (indep.) | words of the plays | 4-grams of the plays | "
            "ppl (AR) | ppl (3-gram) | distinct-2 | NFE | NFE/step | tokens/s |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    flu = results.get("fluency", {"n": 0, "rows": {}, "invented": {}})
    md = [f"### Fluency: both families, unguided and guided, on the same {flu['n']} requests "
          f"(seed {flu.get('seed', 0)})", "",
          *FLUENCY_HEAD, *(FLUENCY.format(label=k, **r) for k, r in flu["rows"].items()), "",
          "Words not in the training plays (all occurrences / all words):", ""]
    for k, v in flu["invented"].items():
        common = ", ".join(f"{w} ({c})" if c > 1 else w for w, c in v["most_common"])
        md.append(f"- {k}: {v['invented']} / {v['words']} — {common}")
    md += ["", f"{results['n']} samples per row (genres balanced) unless said; our genre judge scores "
           f"{results['judge_real_accuracy']['genre']:.2f} on real held-out passages, the independent one "
           f"{results['independent_real_accuracy']:.2f} (chance 0.33).", ""]
    for name, rows in results["models"].items():
        md += [f"### {name} (held-out perplexity per text token ≤ {rows['perplexity']:.1f}; "
               f"{rows['n']} samples per row, {rows['steps']} steps)", "", *head]
        md += [_row(f"cfg w={float(w):g}" if float(w) != 1 else "w=1 (no guidance)", r)
               for w, r in rows["cfg"].items()]  # JSON keys are strings after a reload
        md += [_row(k, r) for k, r in rows["extra"].items()]
        md += [_row(k, r) for k, r in rows.get("contrastive", {}).items()]
        md.append("")
    return "\n".join(md)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("docs/results"))
    ap.add_argument("--n", type=int, default=240)
    ap.add_argument("--n-fluency", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0, help="sampling seed of the fluency table")
    ap.add_argument("--skip-fluency", action="store_true", help="keep text.json's fluency table")
    ap.add_argument("--models", nargs="*", default=["shakespeare_ar", "shakespeare_masked"],
                    help="models to score (none: only the fluency table)")
    args = ap.parse_args()
    run(args.out, args.n, args.models, args.n_fluency, fluency=not args.skip_fluency, seed=args.seed)
    print((args.out / "text.md").read_text())
