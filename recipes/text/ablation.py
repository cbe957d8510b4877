"""Why the masked text model wrote non-words, and what each change bought (docs/text.md's ablation).

    python recipes/text/ablation.py [--n 60] [--seed 0] [--rows LABEL ...] [--out docs/results]

Each row samples the same ``--n`` genre requests (balanced, seed ``--seed``) under ``cfg(genre, 3)``
with one checkpoint and one sampler setting, and scores them with the text judge's fluency measures
(:mod:`modalities.text.fluency`): words of the plays, 4-grams of the plays, perplexity under the
shipped AR model and under a 3-gram model of the plays, genre by our judge and by the independent
one; and the network itself by its **left-to-right next-token perplexity** on real held-out text
(the prefix clean, everything from the predicted token on masked: what left-to-right decoding asks
of it; the AR model's row is its own next-token perplexity on the same tokens). The sampler is
changed on the loaded model (``model.family``), the training on the checkpoint:
``shakespeare_masked_scratch`` (2,500 steps from scratch), ``shakespeare_masked`` (adapted from the
AR model, the output at position i predicting token i: the shipped model),
``shakespeare_masked_shift`` (adapted keeping the AR model's one-position shift; ``@0``: warm-started,
no training step) and ``shakespeare_masked_shift_suffix`` (the same, half of the training rows masked
as a suffix). The last two are not shipped: train their recipes and ``polyguide export`` the step-250
checkpoint to ``recipes/text/checkpoints/<name>.ckpt``. Writes
``text_ablation.json`` (seed 0; ``text_ablation_seed<S>.json`` for another seed; rows already there
and not rerun are kept) and the matching ``.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from framework.core import plugins
from framework.evaluation import markdown_table
from framework.training.module import load

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
GUIDANCE = "cfg(genre, 3)"
SCRATCH, ADAPTED = "shakespeare_masked_scratch", "shakespeare_masked_noshift"  # the latter not shipped
SHIFT, SUFFIX = "shakespeare_masked_shift", "shakespeare_masked_shift_suffix"  # not shipped
WARM = "shakespeare_masked_shift@0"  # shakespeare_masked_shift.yaml's model warm-started, 0 steps
BOS_WARM = "shakespeare_masked_bos@0"  # shift + a BOS position, bidirectional attention, 0 steps
CLEAN_WARM = "shakespeare_masked@0"  # shift + BOS + clean-context attention, 0 steps
CLEAN = "shakespeare_masked"  # the same, trained: the shipped masked text model
RANDOM_T1 = {"order": "random", "temperature": 1.0, "top_k": None, "remask": 0.0}
TUNED = {"order": "random", "temperature": 0.8, "top_k": 40, "remask": 0.0}
SHIPPED = {**TUNED, "order": "left_to_right"}  # shakespeare_masked's family_args
LINEAR = {**SHIPPED, "schedule": "linear"}  # left to right, one token per step (64 steps)
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
    "AR-adapted · left-to-right order, T=0.8, top-k 40 (shipped before)": (ADAPTED, SHIPPED, 64),
    "AR-adapted · T=0.8, top-k 40, ReMDM remasking η=0.05": (ADAPTED, {**TUNED, "remask": 0.05}, 64),
    "AR-adapted · random order, T=0.6, top-k 20": (ADAPTED, {**TUNED, "temperature": 0.6, "top_k": 20}, 64),
    "AR-adapted · left-to-right, cosine schedule (shipped before)":
        (ADAPTED, {**SHIPPED, "schedule": "cosine"}, 64),
    "AR-adapted · left-to-right, 1 token per step": (ADAPTED, LINEAR, 64),
    "AR-adapted with shift, 0 steps (warm start only) · left-to-right, 1 token per step": (WARM, LINEAR, 64),
    "AR-adapted with shift · left-to-right, cosine schedule": (SHIFT, {**LINEAR, "schedule": "cosine"}, 64),
    "AR-adapted with shift · left-to-right, 1 token per step": (SHIFT, LINEAR, 64),
    "AR-adapted with shift · left-to-right, blocks of 2 (32 steps)": (SHIFT, LINEAR, 32),
    "AR-adapted with shift · random order, 1 token per step": (SHIFT, {**LINEAR, "order": "random"}, 64),
    "AR-adapted with shift + suffix masks · left-to-right, 1 token per step": (SUFFIX, LINEAR, 64),
    "shift + BOS position, 0 steps · left-to-right, 1 token per step": (BOS_WARM, LINEAR, 64),
    "shift + BOS + clean-context attention, 0 steps · left-to-right, 1 token per step":
        (CLEAN_WARM, LINEAR, 64),
    "shift + BOS + clean-context attention, trained · left-to-right, 1 token per step": (CLEAN, LINEAR, 64),
    "shift + BOS + clean-context attention, trained · left-to-right, blocks of 2 (32 steps)":
        (CLEAN, LINEAR, 32),
    "shift + BOS + clean-context attention, trained · random order, 1 token per step":
        (CLEAN, {**LINEAR, "order": "random"}, 64),
}
AR = "shakespeare_ar"


def warm_started(recipe: Path):
    """The recipe's model with its ``WarmStart`` callback applied and no training step."""
    import types

    import yaml

    from framework.training.module import GenerativeModule
    from framework.training.warm_start import WarmStart

    config = yaml.safe_load(recipe.read_text())
    model = GenerativeModule(**config["model"])
    [warm] = [c["init_args"] for c in config["trainer"]["callbacks"] if c["class_path"].endswith("WarmStart")]
    WarmStart(**warm).setup(types.SimpleNamespace(ckpt_path=None), model, "fit")
    return model.eval()


@torch.no_grad()
def next_token_perplexity(model, batches: int = 2, positions: range = range(0, 48, 3)) -> float:
    """Perplexity per text token of predicting token ``j`` from a clean prefix ``x[:j]`` (masked
    family: everything from ``j`` on masked; autoregressive: its own causal prediction), over the
    first ``batches`` validation batches (64 windows each) of the held-out plays and ``positions``."""
    from modalities.text.data import ShakespeareData

    dm = ShakespeareData(length=model.codec.length, tokenizer=model.hparams.representation["tokenizer"],
                         batch_size=64)
    total, count, fam = 0.0, 0, model.family
    for b, batch in enumerate(dm.val_dataloader()):
        if b >= batches:
            break
        x, conds = model._batch(batch)
        if not hasattr(fam, "mask_id"):
            logits = model.backbone(fam.with_bos(x)[:, :-1], None, conds)
        for j in positions:
            if hasattr(fam, "mask_id"):
                xt = x.clone()
                xt[:, j:] = fam.mask_id
                t = (xt == fam.mask_id).float().mean(1)
                logits = fam.align(model.backbone(fam.network_input(xt), t, conds))
            nll = F.cross_entropy(logits[:, j].float(), x[:, j], reduction="none")
            text = x[:, j] != model.codec.pad_id
            total, count = total + float(nll[text].sum()), count + int(text.sum())
    return math.exp(total / count)


def run(out: Path, n: int, labels: list[str], seed: int = 0) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from report import score  # this folder's report.py

    out.mkdir(parents=True, exist_ok=True)
    judge = plugins.get("text").judge({}, None, CHECKPOINTS)
    stem = "text_ablation" if seed == 0 else f"text_ablation_seed{seed}"
    saved = out / f"{stem}.json"
    results = json.loads(saved.read_text()) if saved.exists() else {"n": n, "guidance": GUIDANCE, "rows": {}}
    if results["n"] != n:
        raise SystemExit(f"{saved} holds rows of {results['n']} samples; use --n {results['n']} "
                         "or another --out")
    results["seed"] = seed
    nt = results.setdefault("next_token_ppl", {})
    if AR not in nt:
        nt[AR] = next_token_perplexity(load(str(CHECKPOINTS / f"{AR}.ckpt")))
    models: dict = {}
    for label in labels:
        name, settings, steps = ROWS[label]
        if name.endswith("@0"):  # the recipe's warm start, no training step
            models[name] = models.get(name) or warm_started(CHECKPOINTS.parent / f"{name.split('@')[0]}.yaml")
        if name not in models:
            path = CHECKPOINTS / f"{name}.ckpt"
            if not path.exists():
                raise SystemExit(f"{path} is missing: train recipes/text/{name}.yaml and `polyguide export` "
                                 f"its last checkpoint there")
            models[name] = load(str(path))
        model = models[name]
        for key, value in settings.items():
            setattr(model.family, key, value)
        if name not in nt:
            nt[name] = next_token_perplexity(model)
        row = score(model, judge, GUIDANCE, n, steps, seed=seed)
        results["rows"][label] = {"checkpoint": name, "settings": settings, "steps": steps, **row}
        if saved.exists():  # keep rows another run (e.g. in parallel) wrote meanwhile
            now = json.loads(saved.read_text())
            results["rows"], nt = {**now["rows"], **results["rows"]}, {**now.get("next_token_ppl", {}), **nt}
            results["next_token_ppl"] = nt
        print(f"{label}: words of the plays {row['vocab_share']:.3f}, 4-grams {row['ngram4_overlap']:.3f}, "
              f"ppl AR {row['ppl_ar']:.1f}, 3-gram {row['ppl_ngram']:.0f}, genre {row['acc_genre']:.2f} / "
              f"{row['acc_genre_indep']:.2f}", flush=True)
        saved.write_text(json.dumps(results, indent=2))
    results["rows"] = {k: results["rows"][k] for k in ROWS if k in results["rows"]}
    saved.write_text(json.dumps(results, indent=2))
    (out / f"{stem}.md").write_text(table(results))
    return results


def table(results: dict) -> str:
    nt = results.get("next_token_ppl", {})
    header = ["model · sampler", "next-token ppl (L-to-R)", "words of the plays", "4-grams of the plays",
              "ppl (AR)", "ppl (3-gram)", "genre (ours)", "genre (indep.)", "distinct-2", "words/sample",
              "NFE"]
    rows = [[f"{AR} (reference: its own next-token perplexity)", f"{nt[AR]:.1f}", *[""] * 9]
            ] if AR in nt else []
    for label, r in results["rows"].items():
        rows.append([label, f"{nt[r['checkpoint']]:.1f}" if r["checkpoint"] in nt else "—",
                     f"{r['vocab_share']:.3f}", f"{r['ngram4_overlap']:.3f}", f"{r['ppl_ar']:.1f}",
                     f"{r['ppl_ngram']:.0f}", f"{r['acc_genre']:.2f}", f"{r['acc_genre_indep']:.2f}",
                     f"{r['distinct_2']:.2f}", f"{r['words_per_sample']:.1f}", str(r["nfe"])])
    intro = (f"{results['n']} samples per row (genres balanced, seed {results.get('seed', 0)}), "
             f"`{results['guidance']}`.\n\n")
    return intro + markdown_table(header, rows, fmt=str)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("docs/results"))
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS), metavar="LABEL")
    args = ap.parse_args()
    run(args.out, args.n, args.rows, args.seed)
    stem = "text_ablation" if args.seed == 0 else f"text_ablation_seed{args.seed}"
    print((args.out / f"{stem}.md").read_text())
