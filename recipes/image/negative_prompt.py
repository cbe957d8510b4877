"""What a negative prompt does on the shipped shapes flow model, judged honestly, for docs/image.md.

    python recipes/image/negative_prompt.py [--n 128] [--steps 30] [--out docs/results]

The request is a circle with no colour given; each expression pushes away from red in its own way.
For each it reports how many samples the judge (the image report's shapes classifier) reads as
circles and as red, which colours the rest became (a push that turns everything cyan, red's
complement, has not "removed red" so much as replaced it), and the Fréchet distance to real
renders on the judge's features. Writes ``negative_prompt.{json,md,png}`` into ``--out``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from framework.core.conditions import Conditions
from framework.core.shipped import recipes_dir
from framework.evaluation import markdown_table
from framework.training.module import load
from modalities.image.metrics import frechet_distance
from modalities.image.plugin import ImageModality
from modalities.image.rules import read_batch
from modalities.image.shapes import COLORS
from modalities.image.writers import save_grid

CHECKPOINTS = recipes_dir("image") / "checkpoints"
KEEP = "cond(shape) + 2*(cond(shape) - uncond)"  # = cfg(shape, 3)
EXPRESSIONS = {
    "circle, no guidance": "cond(shape)",
    "circle, CFG w=3": "cfg(shape, 3)",
    "not red: negative w=4 (the README's row)": "negative(shape, color, red, 4)",
    "not red: negative w=2": "negative(shape, color, red, 2)",
    "not red: negative w=1.5": "negative(shape, color, red, 1.5)",
    # CFG on the shape keeps the circle; a separate, milder term pushes away from red
    "circle CFG w=3, not red w=1": f"{KEEP} + 1*(cond(shape) - cond(shape, color=red))",
    "circle CFG w=3, not red w=2": f"{KEEP} + 2*(cond(shape) - cond(shape, color=red))",
    # the push without its over-saturation: APG drops the part of the update parallel to the
    # positive prediction, rescale matches the positive prediction's spread (both in x0 space)
    "not red: APG w=4": "apg(negative(shape, color, red, 4))",
    "not red: APG w=2": "apg(negative(shape, color, red, 2))",
    "not red: rescale w=4": "rescale(negative(shape, color, red, 4), 0.7)",
    "not red: rescale w=2": "rescale(negative(shape, color, red, 2), 0.7)",
}


def with_position(expression: str) -> str:
    """``expression`` with the position added to every branch that names the shape."""
    return (expression.replace("cond(shape", "cond(shape, position")
            .replace("cfg(shape,", "cfg((shape, position),")
            .replace("negative(shape,", "negative((shape, position),"))


def run(out: Path, n: int, steps: int, seed: int = 0, per_row: int = 8,
        checkpoint: Path = CHECKPOINTS / "shapes_flow.ckpt", only: str = "", position: bool = False) -> dict:
    """Sample ``n`` circles per expression (those whose label contains one of the comma-separated
    ``only``); score them; write a grid of the first ``per_row`` each. ``position``: each circle's
    position is drawn uniformly (as in the data) and given to every branch."""
    model = load(str(checkpoint))
    judge = ImageModality().judge(model.specs, model.codec, CHECKPOINTS)
    raw: dict = {"shape": "circle"}
    if position:
        labels = model.specs["position"].labels
        drawn = torch.randint(len(labels), (n,), generator=torch.Generator().manual_seed(seed + 1))
        raw["position"] = [labels[i] for i in drawn]
    conds = Conditions.from_raw(model.specs, raw, n)
    circle, red = model.specs["shape"].labels.index("circle"), COLORS.index("red")
    rows, grids = {}, []
    for label, g in EXPRESSIONS.items():
        if not any(part in label for part in only.split(",")):
            continue
        g = with_position(g) if position else g
        res = model.sample(conds, g, steps=steps, seed=seed)
        media = res.media.float().clamp(0, 1)
        with torch.no_grad():
            logits = judge.classifier(media)
            feats = judge.classifier.features(media)
        shape, color = logits["shape"].argmax(-1), logits["color"].argmax(-1)
        valid, rule_valid = judge.accepts(media), read_batch(media)[0]
        share = {c: float((color == i).float().mean()) for i, c in enumerate(COLORS)}
        # circles and red: shares of all samples (a sample the judge refuses is not a circle)
        rows[label] = {"expression": g, "valid": float(valid.float().mean()),
                       "rule_valid": float(rule_valid.float().mean()),
                       "circle": float(((shape == circle) & valid).float().mean()),
                       "red": float((color == red).float().mean()), "colours": share,
                       "fd": frechet_distance(feats, judge.real_features), "nfe": res.nfe}
        print(label, {k: v for k, v in rows[label].items() if k != "expression"})
        grids.append(media[:per_row])
    out.mkdir(parents=True, exist_ok=True)
    (out / "negative_prompt.json").write_text(json.dumps({"n": n, "steps": steps, "rows": rows}, indent=2))
    body = []
    for label, r in rows.items():
        ranked = sorted(r["colours"].items(), key=lambda kv: -kv[1])
        top = ", ".join(f"{c} {v:.2f}" for c, v in ranked if v >= 0.05)
        body.append([f"{label} (`{r['expression']}`)", f"{r['valid']:.2f}", f"{r['rule_valid']:.2f}",
                     f"{r['circle']:.2f}", f"{r['red']:.2f}", top, f"{r['fd']:.0f}", str(r["nfe"])])
    header = ["request: circle", "valid", "rule valid", "valid circles", "red", "colours of the samples",
              "fd", "NFE"]
    (out / "negative_prompt.md").write_text(markdown_table(header, body, fmt=str))
    save_grid(torch.cat(grids), out / "negative_prompt.png", rows=list(rows),
              title=f"request: circle (no colour); first {per_row} of {n} samples, seed {seed}")
    return rows


if __name__ == "__main__":
    from report_args import report_parser  # the sibling module

    ap = report_parser(__doc__, n=128, seed=0)
    ap.add_argument("--checkpoint", type=Path, default=CHECKPOINTS / "shapes_flow.ckpt")
    ap.add_argument("--only", default="", help="only the rows whose label contains one of these "
                    "comma-separated texts")
    ap.add_argument("--position", action="store_true",
                    help="draw each circle's position (uniformly) and give it to every branch")
    args = ap.parse_args()
    torch.set_num_threads(1)
    run(args.out, args.n, args.steps, args.seed, checkpoint=args.checkpoint, only=args.only,
        position=args.position)
    print((args.out / "negative_prompt.md").read_text())
