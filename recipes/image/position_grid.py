"""The picture beside docs/image.md's position table: the shipped flow model under
``cfg(..., 4)`` on 32 random requests, with the position drawn and given, then left free.

    python recipes/image/position_grid.py [--out docs/results/image_position_cfg4.png] [--seed 20261209]

Same requests (shape and colour) and the same noise in both halves; only the position term differs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from framework.core.conditions import Conditions
from framework.evaluation import random_requests
from framework.training.module import load
from modalities.image.demo import CHECKPOINTS
from modalities.image.writers import save_grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("docs/results/image_position_cfg4.png"))
    ap.add_argument("--seed", type=int, default=20261209)
    ap.add_argument("--checkpoint", type=Path, default=CHECKPOINTS / "shapes_flow.ckpt")
    a = ap.parse_args()
    torch.set_num_threads(1)
    model = load(str(a.checkpoint))
    requested = random_requests(model.specs, ["shape", "color", "position"], 32, a.seed)
    conds = Conditions.from_raw(model.specs, dict(requested), 32)
    halves = [model.sample(conds, g, steps=30, seed=a.seed).media.float().clamp(0, 1)
              for g in ("cfg((shape, color, position), 4)", "cfg((shape, color), 4)")]
    print(save_grid(torch.cat(halves), a.out,
                    rows=["cfg w=4, position given"] * 4 + ["cfg w=4, position free"] * 4))


if __name__ == "__main__":
    main()
