"""Where a motion model's jitter comes from: frame-to-frame second differences of each group of
rotation features (re-encoded from the decoded joints) and the acceleration per joint, generated
against held-out real clips; and the largest one-frame pelvis pop with the root features around it.

    OMP_NUM_THREADS=1 python recipes/motion/diagnose_flow.py \
        --checkpoint recipes/motion/checkpoints/motion_flow.ckpt

Requests are held-out procedural clips (``--request-seed``): caption, root path and action.
"""

from __future__ import annotations

import argparse

import torch
from report import conditions_for, requests

from framework.training.module import load
from modalities.motion.data import load_or_generate
from modalities.motion.physics import physics
from modalities.motion.rotations import positions_to_rotation_features

GROUPS = {"root angular velocity": slice(0, 1), "root ground velocity": slice(1, 3),
          "root height": slice(3, 4), "pelvis orientation": slice(4, 10), "joint rotations": slice(10, 106)}


def second_differences(positions: torch.Tensor) -> dict[str, float]:
    """Mean ``|f[t+1] − 2 f[t] + f[t−1]|`` per feature group of the rotation features of ``[B, T, 22, 3]``."""
    f = positions_to_rotation_features(positions)
    d2 = (f[:, 2:] - 2 * f[:, 1:-1] + f[:, :-2]).abs().mean((0, 1))
    return {name: float(d2[s].mean()) for name, s in GROUPS.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="recipes/motion/checkpoints/motion_flow.ckpt")
    ap.add_argument("--guidance", default="cfg((text, trajectory, action), 2)")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--request-seed", type=int, default=777)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load(args.checkpoint)
    req, caps = requests(args.n, args.request_seed)
    media = model.sample(conditions_for(model, req), args.guidance, steps=args.steps, seed=args.seed).media
    real = torch.from_numpy(load_or_generate(args.n, args.request_seed, None)["positions"])
    for name, pos in (("generated", media), ("real", real)):
        print(name, {k: round(v, 3) for k, v in physics(pos).items()})
        print(name, "second differences:", {k: round(v, 4) for k, v in second_differences(pos).items()})
        acc = (pos[:, 2:] - 2 * pos[:, 1:-1] + pos[:, :-2]).norm(dim=-1).mean((0, 1)) * 400
        print(name, "acceleration per joint (m/s²):", [round(float(a), 1) for a in acc])
        pop = (pos[:, 2:, 0] - 2 * pos[:, 1:-1, 0] + pos[:, :-2, 0]).norm(dim=-1) / 2
        b, t = divmod(int(pop.argmax()), pop.shape[1])
        print(name, f"largest pelvis pop {float(pop.max()):.3f} m: clip {b} ({caps[b]!r}), frame {t + 1}; "
              "pelvis y around it:", [round(float(y), 3) for y in pos[b, max(0, t - 2):t + 5, 0, 1]])


if __name__ == "__main__":
    main()
