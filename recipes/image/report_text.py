"""Score the text→image model (``shapes_text_flow.ckpt``) on captions, for docs/image.md.

    python recipes/image/report_text.py [--n 128] [--steps 30] [--out docs/results]

Three caption sets, each sampled without guidance (``cond(text)``) and with CFG on the caption:
captions in the six training wordings, captions in the four held-out wordings (paraphrases the
model never saw), and eight hand-written free-form captions (other words again: "big",
"lower right", "please"...). The judge is the image report's shapes classifier (trained on real
renders); a sample is right on an attribute when the classifier reads the attribute the caption
names. Writes ``image_text.{json,md}`` and a grid ``image_text.png`` into ``--out``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from framework.core.conditions import Conditions
from framework.core.shipped import recipes_dir
from framework.evaluation import markdown_table
from framework.training.module import load
from modalities.image.captions import HELD_OUT, TRAIN, Caption, evaluation_captions
from modalities.image.plugin import ImageModality
from modalities.image.rules import read_batch
from modalities.image.shapes import COLORS, POSITIONS, SHAPES
from modalities.image.writers import save_grid

CHECKPOINTS = recipes_dir("image") / "checkpoints"
GUIDANCE = {"no guidance (`cond(text)`)": "cond(text)", "CFG w=3 (`cfg(text, 3)`)": "cfg(text, 3)",
            "CFG w=5 (`cfg(text, 5)`)": "cfg(text, 5)"}


def _ask(shape: str, color: str, position: str | None = None) -> dict[str, int]:
    out = {"shape": SHAPES.index(shape), "color": COLORS.index(color)}
    if position is not None:
        out["position"] = POSITIONS.index(position)
    return out


#: written by hand, in words no template uses
FREE_FORM = [
    Caption("draw a blue square", _ask("square", "blue")),
    Caption("a big yellow cross up in the top right", _ask("cross", "yellow", "top right")),
    Caption("green triangle please", _ask("triangle", "green")),
    Caption("the shape is a circle and its colour is magenta", _ask("circle", "magenta")),
    Caption("a cyan square near the bottom left", _ask("square", "cyan", "bottom left")),
    Caption("I would like a red cross", _ask("cross", "red")),
    Caption("a tiny blue circle", _ask("circle", "blue")),
    Caption("yellow triangle, lower right", _ask("triangle", "yellow", "bottom right")),
]


def score(model, judge, captions: list[Caption], guidance: str, steps: int, seed: int) -> dict[str, float]:
    """Accuracy of one sample per caption on each attribute the caption names (and shape + colour)."""
    conds = Conditions.from_raw(model.specs, {"text": [c.text for c in captions]}, len(captions))
    start = time.perf_counter()
    out = model.sample(conds, guidance, steps=steps, seed=seed)
    seconds = time.perf_counter() - start
    media = out.media.float().clamp(0, 1)
    with torch.no_grad():
        logits = judge.classifier(media)
    valid = judge.accepts(media)
    got = {k: logits[k].argmax(-1) for k in ("shape", "color", "position")}
    # accuracy counts only the samples the judge accepts as one clean shape
    right = {k: [bool(got[k][i] == c.requested[k]) for i, c in enumerate(captions)
                 if k in c.requested and valid[i]] for k in ("shape", "color", "position")}
    both = [r_s and r_c for r_s, r_c in zip(right["shape"], right["color"], strict=True)]
    row = {"valid": float(valid.float().mean())}
    row.update({f"acc_{k}": sum(v) / len(v) if v else 0.0 for k, v in right.items()})
    row["acc_shape_color"] = sum(both) / len(both) if both else 0.0
    rule_valid, shape, color = read_batch(media)
    asked_shape = torch.tensor([c.requested["shape"] for c in captions])
    asked_color = torch.tensor([c.requested["color"] for c in captions])
    rule_right = (shape == asked_shape) & (color == asked_color)
    row["rule_valid"] = float(rule_valid.float().mean())
    row["rule_acc_shape_color"] = float(rule_right[rule_valid].float().mean()) if rule_valid.any() else 0.0
    row.update(n=len(captions), n_position=len(right["position"]), nfe=out.nfe, seconds=seconds)
    return row


def run(out: Path, n: int, steps: int, seed: int = 0) -> dict:
    """Score every caption set under every guidance; write the table, JSON and a picture."""
    model = load(str(CHECKPOINTS / "shapes_text_flow.ckpt"))
    judge = ImageModality().judge(model.specs, model.codec, CHECKPOINTS)
    per = max(1, n // len(FREE_FORM))
    sets = {"training wordings": evaluation_captions(TRAIN, seed=seed + 1, n=n),
            "held-out paraphrases": evaluation_captions(HELD_OUT, seed=seed + 2, n=n),
            "free-form (hand-written)": [c for c in FREE_FORM for _ in range(per)]}
    results: dict = {"n": n, "steps": steps, "rows": []}
    for set_name, caps in sets.items():
        for label, g in GUIDANCE.items():
            row = score(model, judge, caps, g, steps, seed)
            results["rows"].append({"captions": set_name, "guidance": label, "expression": g, **row})
            print(set_name, label, {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})
    out.mkdir(parents=True, exist_ok=True)
    (out / "image_text.json").write_text(json.dumps(results, indent=2))
    header = ["captions", "guidance", "valid", "acc shape+colour", "acc_shape", "acc_color",
              "acc_position (n)", "rule valid", "rule acc shape+colour", "NFE"]
    body = [[r["captions"], r["guidance"], f"{r['valid']:.2f}", f"{r['acc_shape_color']:.2f}",
             f"{r['acc_shape']:.2f}", f"{r['acc_color']:.2f}",
             f"{r['acc_position']:.2f} ({r['n_position']})" if r["n_position"] else "—",
             f"{r['rule_valid']:.2f}", f"{r['rule_acc_shape_color']:.2f}", str(r["nfe"])]
            for r in results["rows"]]
    (out / "image_text.md").write_text(markdown_table(header, body, fmt=str))
    # picture: held-out paraphrases and free-form captions, 8 samples each, under CFG w=3
    rows = [c for c in evaluation_captions(HELD_OUT, seed=seed + 5, n=4)] + FREE_FORM[:4]
    media = [model.sample({"text": c.text}, "cfg(text, 3)", n=8, steps=steps, seed=seed).media for c in rows]
    save_grid(torch.cat(media), out / "image_text.png", rows=[c.text for c in rows],
              title="text to image, cfg(text, 3): held-out paraphrases (top 4), free-form (bottom 4)")
    return results


if __name__ == "__main__":
    from report_args import report_parser  # the sibling module

    ap = report_parser(__doc__, n=128)
    args = ap.parse_args()
    torch.set_num_threads(1)
    run(args.out, args.n, args.steps)
    print((args.out / "image_text.md").read_text())
