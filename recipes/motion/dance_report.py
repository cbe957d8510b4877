"""The dance results in docs/dance.md: beat alignment and physics of real, mismatched and generated dances.

    OMP_NUM_THREADS=1 python recipes/motion/dance_report.py --n 64 --steps 20 --seed 11 --out docs/results

Requests are validation dance clips rendered at ``--data-seed`` (held-out melodies, a seed no
training run used): their music (``audio/music`` features of the rendered WAV), caption and
style. Music beats are the score's (never estimated). Tables:

1. real clips with their own music, and *mismatched* pairs (the music rolled by half the set:
   every clip scored against another clip's beats), then the model under each guidance
   (unconditional, conditional, ``cfg(music, w)`` sweep, text-only CFG, ``independent``,
   ``nested``, ``interval``, ``adaptive``), each scored against its request's beats
   (``beat_align``) and against the mismatched beats (``beat_align_mismatch``: what chance
   alignment gives), with the physics metrics of the decoded joints;
2. physics read back from BVH files written for the default guidance (``bvhio``);
3. diversity within a request: 8 samples of each of 8 requests (mean pairwise pose distance,
   metres), against real clips of different requests.

Writes ``dance.json`` and ``dance.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from framework.core.conditions import Conditions
from framework.training.module import load
from modalities.motion.dance.beat_align import beat_alignment
from modalities.motion.dance.data import DEFAULT_CACHE, beat_lists, load_or_generate
from modalities.motion.data import caption_embeddings
from modalities.motion.metrics import pose_distance
from modalities.motion.physics import bvh_physics, physics

CKPT = Path("recipes/motion/checkpoints/dance_flow.ckpt")
PHYS = ("accel", "lowest_toe", "penetration", "foot_skating", "collapses")
GUIDANCES = {
    "unconditional": "uncond()",
    "conditional (w=1)": "cond(music, text, style)",
    "cfg(music, 1.5)": "cfg(music, 1.5)",
    "cfg(music, 3)": "cfg(music, 3)",
    "cfg(music, 5)": "cfg(music, 5)",
    "cfg(text, 2), no music": "cfg(text, 2)",
    "independent([music, text], [3, 2])": "independent([music, text], [3, 2])",
    "nested([music, text], [3, 2])": "nested([music, text], [3, 2])",
    "interval(music, 3, 0.2, 0.8)": "interval(music, 3, 0.2, 0.8)",
    "adaptive(cfg(music, 3))": "adaptive(cfg(music, 3))",
}


def row(label: str, media: torch.Tensor, beats: list[np.ndarray], mismatched: list[np.ndarray],
        **extra) -> dict:
    """Beat alignment against the request's and the mismatched beats, and the physics of ``media``."""
    phys = physics(media)
    return {"source": label, "beat_align": beat_alignment(media, beats),
            "beat_align_mismatch": beat_alignment(media, mismatched), **{k: phys[k] for k in PHYS}, **extra}


def table(rows: list[dict], keys: list[str]) -> str:
    """A markdown table of ``rows`` with columns ``keys`` (after the source)."""
    lines = ["| source | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for r in rows:
        cells = [(f"{r[k]:.3f}" if abs(r[k]) < 10 else f"{r[k]:.1f}") if isinstance(r.get(k), float)
                 else str(r.get(k, "")) for k in keys]
        lines.append(f"| {r['source']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=CKPT)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=11, help="sampling seed")
    p.add_argument("--data-seed", type=int, default=4243, help="render seed of the held-out requests")
    p.add_argument("--out", type=Path, default=Path("docs/results"))
    args = p.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)

    data = load_or_generate(args.n, args.data_seed, True, DEFAULT_CACHE)
    real = torch.from_numpy(data["positions"])
    beats = beat_lists(data["beats"])
    mismatched = beats[args.n // 2:] + beats[:args.n // 2]
    req = {"music": torch.from_numpy(data["music"]), "text": caption_embeddings(data["caption"], None),
           "style": torch.from_numpy(data["style"]).long()}
    rows = [row("real clips", real, beats, mismatched, nfe="", seconds="")]

    model = load(str(args.checkpoint)).eval()
    conds = Conditions({k: req[k] for k in model.specs})
    kept = {}
    for label, g in GUIDANCES.items():
        t = time.time()
        out = model.sample(conds, g, n=args.n, steps=args.steps, seed=args.seed)
        kept[label] = out.media
        rows.append(row(label, out.media, beats, mismatched, nfe=out.nfe, seconds=round(time.time() - t, 1),
                        expression=g))
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()}),
              flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        bvh = [{"source": "real clips", **bvh_physics(real[:16], Path(tmp) / "real")},
               {"source": "independent([music, text], [3, 2])",
                **bvh_physics(kept["independent([music, text], [3, 2])"][:16], Path(tmp) / "gen")}]

    # diversity within a request: 8 requests × 8 samples
    k = min(8, args.n)
    idx = torch.arange(k).repeat_interleave(k)
    sub = Conditions({n: v[idx] for n, v in conds.values.items()})
    div = model.sample(sub, "independent([music, text], [3, 2])", n=k * k, steps=args.steps,
                       seed=args.seed + 1)
    within = float(np.mean([pose_distance(div.media[i * k:(i + 1) * k]) for i in range(k)]))
    diversity = [{"source": "generated, within one request", "pose_distance": within},
                 {"source": "real clips of different requests", "pose_distance": pose_distance(real[:k * k])},
                 {"source": "generated, across requests (one each)", "pose_distance":
                  pose_distance(div.media[::k])}]

    keys = ["beat_align", "beat_align_mismatch", *PHYS, "nfe", "seconds"]
    md = (f"Held-out requests: {args.n} validation clips (render seed {args.data_seed}); sampling seed "
          f"{args.seed}, {args.steps} steps; checkpoint {args.checkpoint}.\n\n"
          "**Beat alignment and physics** (beat alignment against the request's score beats, and against "
          "another clip's beats: *mismatch*)\n\n" + table(rows, keys)
          + "\n**Physics read back from BVH files** (16 clips each)\n\n"
          + table(bvh, ["accel", "lowest_toe", "penetration", "foot_skating", "bone_cv", "bvh_deviation"])
          + "\n**Diversity** (mean pairwise pose distance, m)\n\n" + table(diversity, ["pose_distance"]))
    (args.out / "dance.md").write_text(md)
    (args.out / "dance.json").write_text(json.dumps({"rows": rows, "bvh": bvh, "diversity": diversity,
                                                     "args": {k: str(v) for k, v in vars(args).items()}},
                                                    indent=1))
    print(md)


if __name__ == "__main__":
    main()
