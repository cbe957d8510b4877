"""Cost-gradient guidance on the shipped shapes flow model, measured for docs/image.md.

    OMP_NUM_THREADS=1 python recipes/image/cost_guidance.py [--n 128] [--steps 30] [--out docs/results]

The image modality's ``color`` cost is ``−log p(colour = requested | decode(x̂0))`` by a small
classifier on clean images — trained separately from the judge that scores the samples. Rows, on
the same random (shape, colour) requests, seed and steps:

* colour **not given to the network** (``cond(shape)``): can the cost alone steer the colour?
* colour given: no guidance, CFG, and CFG + cost.

Each row reports the judge's accuracies, Fréchet distance, NFE, backward passes through the
network and sampling seconds. Wall seconds of whole runs depend on how busy the machine is, so a
second table times one guided step per expression (the minimum over repeats, which filters out
other processes). Writes ``cost_guidance.{md,json,png}`` into ``--out``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from framework.core.conditions import Conditions
from framework.evaluation import random_requests, score_guidance
from framework.guidance import parse
from framework.training.module import load
from modalities.image.demo import CHECKPOINTS
from modalities.image.plugin import ImageModality
from modalities.image.writers import save_grid

PAIR = "(shape, color)"
ROWS = {
    "shape only (colour unguided)": "cond(shape)",
    "shape only + colour cost w=2 (x0)": "cond(shape) + cost(color, 2)",
    "shape only + colour cost w=4 (x0)": "cond(shape) + cost(color, 4)",
    "shape only + colour cost w=1 (through model)": "cond(shape) + cost(color, 1, through_model=true)",
    "shape+colour, no guidance (w=1)": f"cond{PAIR}",
    "shape+colour + colour cost w=2 (x0)": f"cond{PAIR} + cost(color, 2)",
    "CFG w=3": f"cfg({PAIR}, 3)",
    "CFG w=3 + colour cost w=2 (x0)": f"cfg({PAIR}, 3) + cost(color, 2)",
    "CFG w=3 + colour cost w=1 (through model)": f"cfg({PAIR}, 3) + cost(color, 1, through_model=true)",
    "CFG w=3 + shape cost w=2 (x0)": f"cfg({PAIR}, 3) + cost(shape, 2)",
}
STEP_TIMING = {"cond(shape)": "cond(shape)", "+ colour cost (x0)": "cond(shape) + cost(color, 2)",
               "+ colour cost (through model)": "cond(shape) + cost(color, 1, through_model=true)",
               "CFG w=3": f"cfg({PAIR}, 3)", "CFG + colour cost (x0)": f"cfg({PAIR}, 3) + cost(color, 2)",
               "CFG + colour cost (through model)": f"cfg({PAIR}, 3) + cost(color, 1, through_model=true)"}
PICTURE = ["shape only (colour unguided)", "shape only + colour cost w=4 (x0)",
           "shape only + colour cost w=1 (through model)", "CFG w=3", "CFG w=3 + colour cost w=2 (x0)"]


def table(rows: list[dict]) -> str:
    """Markdown: colour / shape / both right, Fréchet distance, NFE, backward passes, seconds."""
    lines = ["| guidance | expression | acc_color | acc_shape | acc_all | fd | NFE | backward | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        accs = " | ".join(f"{r[k]:.2f}" for k in ("acc_color", "acc_shape", "acc_all"))
        lines.append(f"| {r['guidance']} | `{r['expression']}` | {accs} | {r['fd']:.0f} | {r['nfe']} | "
                     f"{r['backward']} | {r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def step_seconds(model, conds: Conditions, repeats: int = 7) -> list[dict]:
    """Seconds of one guided step (flow, t = 0.5) per :data:`STEP_TIMING` expression: the minimum
    over ``repeats`` runs, taken round-robin so that load on the machine hits every row alike."""
    x = torch.randn(conds.batch_size, *model.shape, generator=torch.Generator().manual_seed(0))
    t = torch.full((conds.batch_size,), 0.5)
    guiders = {k: model.family.guider(g, model.backbone, specs=model.specs, costs=model.costs_for(parse(g)))
               for k, g in STEP_TIMING.items()}
    best = dict.fromkeys(guiders, float("inf"))
    stats = {}
    with torch.no_grad():
        for _ in range(repeats):
            for k, gd in guiders.items():
                start = time.perf_counter()
                stats[k] = gd.step(x, t, 0.5, conds, gd.new_state()).stats
                best[k] = min(best[k], time.perf_counter() - start)
    return [{"guidance": k, "expression": STEP_TIMING[k], "nfe": stats[k].nfe, "backward": stats[k].backward,
             "forward_calls": stats[k].forward_calls, "seconds": best[k],
             "relative": best[k] / best["cond(shape)"]} for k in guiders]


def step_table(rows: list[dict], n: int) -> str:
    lines = [f"| one step, {n} samples | NFE | forward calls | backward | ms | × `cond(shape)` |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['guidance']} | {r['nfe']} | {r['forward_calls']} | {r['backward']} | "
                     f"{1000 * r['seconds']:.0f} | {r['relative']:.2f} |")
    return "\n".join(lines) + "\n"


def run(out: Path, n: int, steps: int, seed: int = 0) -> list[dict]:
    """Sample and judge every row; returns the rows (also written to ``out``)."""
    model = load(str(CHECKPOINTS / "shapes_flow.ckpt"))
    judge = ImageModality().judge(model.specs, model.codec, CHECKPOINTS)
    requested = random_requests(model.specs, ["shape", "color"], n, seed)
    conds = Conditions.from_raw(model.specs, dict(requested), n)
    for g in ROWS.values():  # build the costs first (the classifier loads once), so seconds are sampling only
        model.costs_for(parse(g))
    rows, media = [], {}
    for label, g in ROWS.items():
        row, res = score_guidance(model, judge, conds, requested, label, g, steps, seed)
        row.update(backward=res.backward, cost_evals=res.cost_evals)
        rows.append(row)
        media[label] = res.media[:8]
        print(f"{label:48s} colour {row['acc_color']:.2f} shape {row['acc_shape']:.2f} "
              f"all {row['acc_all']:.2f} fd {row['fd']:.0f} NFE {row['nfe']} backward {row['backward']} "
              f"{row['seconds']:.1f} s", flush=True)
    timing = step_seconds(model, conds)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cost_guidance.json").write_text(json.dumps({"n": n, "steps": steps, "seed": seed, "rows": rows,
                                                        "step_timing": timing,
                                                        "threads": torch.get_num_threads()}, indent=2))
    (out / "cost_guidance.md").write_text(table(rows) + "\n" + step_table(timing, n))
    asked = [f"{model.specs['shape'].labels[s]} {model.specs['color'].labels[c]}"
             for s, c in zip(requested["shape"][:8].tolist(), requested["color"][:8].tolist(), strict=True)]
    save_grid(torch.cat([media[k] for k in PICTURE]), out / "cost_guidance.png", rows=PICTURE, cols=asked,
              title=f"cost guidance on shapes_flow ({steps} steps)")
    return rows


if __name__ == "__main__":
    from report_args import report_parser  # the sibling module

    ap = report_parser(__doc__, n=128, seed=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: comparable timings)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    run(args.out, args.n, args.steps, args.seed)
    print(f"done in {time.perf_counter() - start:.0f} s")
    print((args.out / "cost_guidance.md").read_text())
