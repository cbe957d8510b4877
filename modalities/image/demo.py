"""The main job: guided sampling from the shipped shapes checkpoint under several guidances.

For each guidance expression it samples 8 (shape, colour) requests × 8 samples, writes a labelled
PNG grid, and scores the samples with the shapes judge (a classifier trained on real renders):
per-attribute and all-attributes accuracy, Fréchet distance on the judge's features, diversity,
NFE and seconds. A negative-prompt grid shows steering *away* from a colour.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from framework.core.conditions import Conditions
from framework.core.shipped import recipes_dir
from framework.evaluation import format_table, score_guidance
from framework.model.checkpoints import load_model
from framework.model.generative import GenerativeModel

from .judges import shapes_or_digits_judge
from .writers import save_grid

CHECKPOINTS = recipes_dir("image") / "checkpoints"
CHECKPOINT = CHECKPOINTS / "shapes_flow.ckpt"

REQUESTS = [("circle", "red"), ("square", "green"), ("triangle", "blue"), ("cross", "yellow"),
            ("circle", "magenta"), ("square", "cyan"), ("triangle", "yellow"), ("cross", "blue")]
EXPRESSIONS = {
    "no guidance (w=1)": "cond(shape, color)",
    "cfg on shape only, w=4": "cfg(shape, 4)",
    "cfg joint, w=4": "cfg((shape, color), 4)",
    "independent 3, 3": "independent([shape, color], [3, 3])",
    "nested 2, 4": "nested([shape, color], [2, 4])",
    "apg w=8 (x0)": "apg((shape, color), 8, space=x0)",
    "interval w=4, τ∈[0.2, 0.8]": "interval((shape, color), 4, 0.2, 0.8)",
}
# w = 1.5: at w = 4 no sample is red but nearly all turn into over-saturated cyan blobs (docs/image.md)
NEGATIVE = {"circle, no guidance": "cond(shape)",
            "circle, not red (negative w=1.5)": "negative(shape, color, red, 1.5)"}


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def run_demo(out: Path, checkpoint: Path = CHECKPOINT, per_request: int = 8, steps: int = 30, seed: int = 0,
             progress: bool = True, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Run the demo (sampling on ``device``; judged on the CPU); returns ``{"rows": [...],
    "negative": {...}, "files": [...]}``."""
    if not checkpoint.exists():
        raise FileNotFoundError(f"checkpoint {checkpoint} is missing; train it with `polyguide fit "
                                "--config recipes/image/shapes_flow.yaml` (see recipes/README.md)")
    model = load_model(str(checkpoint), device, cls=GenerativeModel)  # sampling only: no Lightning
    judge = shapes_or_digits_judge(model.specs, model.codec.size, checkpoint.parent)  # the plugin's judge
    out.mkdir(parents=True, exist_ok=True)
    shape = torch.tensor([model.specs["shape"].labels.index(s) for s, _ in REQUESTS])
    color = torch.tensor([model.specs["color"].labels.index(c) for _, c in REQUESTS])
    shape, color = shape.repeat_interleave(per_request), color.repeat_interleave(per_request)
    conds = Conditions.from_raw(model.specs, {"shape": shape, "color": color}, len(shape))
    rows_labels = [f"{s} {c}" for s, c in REQUESTS]
    requested = {"shape": shape, "color": color}
    rows, files = [], []
    for label, g in tqdm(EXPRESSIONS.items(), desc="guidance", disable=not progress):
        row, res = score_guidance(model, judge, conds, requested, label, g, steps, seed)
        rows.append(row)
        files.append(save_grid(res.media, out / f"{_slug(label)}.png", rows=rows_labels,
                               title=f"{label}:  {g}   (NFE {res.nfe})"))
    # steering away from a colour: circles with no colour requested, then "not red"
    n = 4 * per_request
    circle = Conditions.from_raw(model.specs, {"shape": "circle"}, n)
    red = model.specs["color"].labels.index("red")
    negative, grids = {}, []
    for label, g in NEGATIVE.items():
        res = model.sample(circle, g, steps=steps, seed=seed)
        res.media = res.media.cpu()
        logits = judge.classifier(res.media.float().clamp(0, 1))
        valid = judge.accepts(res.media)
        negative[label] = {"expression": g, "red": float((logits["color"].argmax(-1) == red).float().mean()),
                           "valid": float(valid.float().mean()),  # circles: valid samples read as circles
                           "circle": float(((logits["shape"].argmax(-1) == 0) & valid).float().mean()),
                           "nfe": res.nfe}
        grids.append(res.media)
    files.append(save_grid(torch.cat(grids), out / "negative_colour.png",
                           rows=[lbl for lbl in NEGATIVE for _ in range(4)], title="negative prompt"))
    summary = {"checkpoint": str(checkpoint), "steps": steps, "samples_per_expression": len(shape),
               "rows": rows, "negative": negative}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    table = format_table(rows) + "\n" + negative_table(negative)
    (out / "summary.md").write_text(table)
    files += [out / "summary.md", out / "summary.json"]
    return {"rows": rows, "negative": negative, "files": files, "table": table}


def negative_table(negative: dict[str, dict[str, float]]) -> str:
    lines = ["| negative prompt | valid | valid circles | red | NFE |", "|---|---|---|---|---|"]
    for label, r in negative.items():
        lines.append(f"| {label} | {r['valid']:.2f} | {r['circle']:.2f} | {r['red']:.2f} | {r['nfe']} |")
    return "\n".join(lines) + "\n"
