"""Long clips and composition on the shipped motion checkpoints (``modalities.motion.longer``).

    OMP_NUM_THREADS=1 python recipes/motion/long_report.py --n 8 --steps 20 --seed 5

1. Length: 10 s clips (4 windows) of one action request per model; the acceleration at the joins
   relative to elsewhere, the physics of the whole clip against its first window (a plain 3.2 s
   sample), the judge's action accuracy on the first and last 3.2 s.
2. Composition ("jumps, then walks"): window 1 asks for the first action (action + caption), the
   next window the second; the judge's accuracy on each 3.2 s segment, and an independent check
   read back from the written BVH files: pelvis-height peaks (> 8 cm above the clip's median) in a
   jump segment, the pelvis ground speed in a walk segment.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from framework.cli.commands import _load
from modalities.motion.actions import ACTIONS, FPS, FRAMES
from modalities.motion.bvh import read_bvh, write_bvh
from modalities.motion.features import features_to_positions, positions_to_features
from modalities.motion.longer import sample_long, seam_acceleration
from modalities.motion.metrics import MotionJudge
from modalities.motion.physics import physics

CKPT = Path("recipes/motion/checkpoints")
PAIRS = [("jump", "walk", "a person jumps twice", "a person walks forward"),
         ("walk", "jump", "a person walks forward", "a person jumps twice"),
         ("wave", "run", "someone waves with the right hand", "someone runs forward")]


def canonical(chunk: torch.Tensor) -> torch.Tensor:
    """A segment ``[n, T, 22, 3]`` cut from a long clip, moved to start at the origin facing ``+z``."""
    f = positions_to_features(chunk)
    f[:, 0, :3] = 0.0
    return features_to_positions(f)


def jumps(pos: torch.Tensor) -> list[int]:
    """Pelvis-height peaks more than 8 cm above each clip's median height."""
    y = pos[:, :, 0, 1]
    up = y > y.median(1, keepdim=True).values + 0.08
    return [int(((u[1:].int() - u[:-1].int()) == 1).sum() + int(u[0])) for u in up]


def speed(pos: torch.Tensor) -> torch.Tensor:
    """Mean pelvis ground speed (m/s) per clip."""
    g = pos[:, :, 0, [0, 2]]
    return (g[:, 1:] - g[:, :-1]).norm(dim=-1).mean(1) * FPS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    judge = MotionJudge.cached(CKPT)

    def acc(chunk, action):
        return judge.evaluate(canonical(chunk), {"action": torch.full((len(chunk),), ACTIONS.index(action))}
                              )["acc_action"]

    guidance = "cfg((action, text), 2)"  # composition; the long clips ask for an action alone
    for name in ("motion_masked", "motion_flow"):
        model = _load(CKPT / f"{name}.ckpt")
        print(f"## {name}: 10 s clips cfg(action, 2); composition {guidance}; {args.steps} steps, "
              f"seed {args.seed}")
        accs, seams = [], []
        for action in ("walk", "run", "jump", "wave"):
            r = sample_long(model, {"action": action}, "cfg(action, 2)", frames=200, n=args.n, seed=args.seed,
                            steps=args.steps)
            p = r.positions
            seams.append(seam_acceleration(p, r.joins))
            accs.append((acc(p[:, :FRAMES], action), acc(p[:, -FRAMES:], action)))
            whole, first = physics(p), physics(p[:, :FRAMES])
            print(f"10 s {action}: seam {seams[-1]:.2f}x, acc first/last 3.2 s "
                  f"{accs[-1][0]:.2f}/{accs[-1][1]:.2f}, "
                  f"accel {whole['accel']:.1f} (first window {first['accel']:.1f}), skating "
                  f"{whole['foot_skating']:.2f} ({first['foot_skating']:.2f}), toe {whole['lowest_toe']:.3f}")
        for a, b, ta, tb in PAIRS:
            r = sample_long(model, [{"action": a, "text": ta}, {"action": b, "text": tb}], guidance,
                            frames=2 * FRAMES - 16, n=args.n, seed=args.seed, steps=args.steps)
            with tempfile.TemporaryDirectory() as tmp:
                back = torch.stack([read_bvh(write_bvh(m, Path(tmp) / f"c{i}.bvh"))
                                    for i, m in enumerate(r.positions)])
            s1, s2 = back[:, :FRAMES], back[:, -FRAMES:]
            line = (f"{a} then {b}: acc segment 1 {acc(r.positions[:, :FRAMES], a):.2f}, segment 2 "
                    f"{acc(r.positions[:, -FRAMES:], b):.2f}; BVH: ")
            for seg, act in ((s1, a), (s2, b)):
                if act == "jump":
                    line += f"jumps {jumps(seg)} "
                elif act in ("walk", "run"):
                    line += f"{act} speed {[round(float(v), 2) for v in speed(seg)]} "
                else:
                    line += f"{act} speed {float(speed(seg).mean()):.2f} "
            print(line)


if __name__ == "__main__":
    main()
