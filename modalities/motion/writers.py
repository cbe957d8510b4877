"""Motion writers: an animated stick-figure GIF (labelled grid, trajectory on the floor) and BVH files.

The GIF is drawn with Pillow: each cell shows one sample from a fixed camera above and in front
of it, the floor grid, the requested root path (red, if given) and the root path travelled so
far (grey). BVH files go through ``bvhio`` (see :mod:`modalities.motion.bvh`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from framework.core.atomic import atomic_write

from .actions import FPS
from .skeleton import PARENTS

__all__ = ["save_gif"]

_LEFT = {1, 4, 7, 10, 13, 16, 18, 20}
_RIGHT = {2, 5, 8, 11, 14, 17, 19, 21}


def _camera(points: np.ndarray, yaw: float = math.radians(30), tilt: float = math.radians(25)) -> np.ndarray:
    """Orthographic view ``[..., 3]`` → screen ``[..., 2]`` (x right, y down, in metres)."""
    c, s = math.cos(yaw), math.sin(yaw)
    x = c * points[..., 0] - s * points[..., 2]
    z = s * points[..., 0] + c * points[..., 2]
    ct, st = math.cos(tilt), math.sin(tilt)
    y = ct * points[..., 1] - st * z
    return np.stack([-x, -y], -1)


def save_gif(positions: torch.Tensor, path: Path, *, labels: Sequence[str] | None = None,
             trajectories: torch.Tensor | None = None, title: str | None = None, cols: int | None = None,
             cell: int = 200, fps: int = FPS) -> Path:
    """Write an animated GIF of ``B`` motions in a grid.

    Args:
        positions: joint positions ``[B, T, 22, 3]``.
        path: the ``.gif`` to write (atomically).
        labels: one caption per sample (drawn above its cell).
        trajectories: requested root ground paths ``[B, T, 2]`` (``x, z``; NaN rows are not drawn),
            drawn on the floor in red.
        title: a line above the grid.
        cols: grid columns (default ``ceil(sqrt(B))``).
    """
    pos = positions.detach().cpu().float().numpy()
    B, T = pos.shape[:2]
    cols = cols or math.ceil(math.sqrt(B))
    rows = math.ceil(B / cols)
    head = 18 if title else 0
    label_h = 14
    traj = trajectories.detach().cpu().float().numpy() if trajectories is not None else None
    frames = []
    # per-sample framing: fixed over time so the figure visibly travels
    views = []
    for b in range(B):
        pts = [pos[b].reshape(-1, 3)]
        if traj is not None:
            tr = traj[b][~np.isnan(traj[b]).any(-1)]
            pts.append(np.stack([tr[:, 0], np.zeros(len(tr)), tr[:, 1]], -1))
        scr = _camera(np.concatenate(pts))
        lo, hi = scr.min(0), scr.max(0)
        scale = (cell - 20) / max(float((hi - lo).max()), 1.2)
        views.append((lo, hi, scale))
    for t in range(T):
        img = Image.new("RGB", (cols * cell, rows * (cell + label_h) + head), "white")
        d = ImageDraw.Draw(img)
        if title:
            d.text((4, 3), title[:cols * cell // 6], fill="black")
        for b in range(B):
            r, c = divmod(b, cols)
            ox, oy = c * cell, head + r * (cell + label_h)
            lo, hi, scale = views[b]
            centre = (lo + hi) / 2

            def to_px(p: np.ndarray, ox: int = ox, oy: int = oy, centre: np.ndarray = centre,
                      scale: float = scale) -> list[tuple[float, float]]:
                s = (_camera(p) - centre) * scale + np.array([cell / 2, label_h + cell / 2])
                return [(ox + float(x), oy + float(y)) for x, y in s.reshape(-1, 2)]

            # floor grid (1 m) around the sample
            gx = np.arange(math.floor(pos[b, :, 0, 0].min()) - 1, math.ceil(pos[b, :, 0, 0].max()) + 2)
            gz = np.arange(math.floor(pos[b, :, 0, 2].min()) - 1, math.ceil(pos[b, :, 0, 2].max()) + 2)
            for x in gx:
                d.line(to_px(np.array([[x, 0, gz[0]], [x, 0, gz[-1]]])), fill=(225, 225, 225))
            for z in gz:
                d.line(to_px(np.array([[gx[0], 0, z], [gx[-1], 0, z]])), fill=(225, 225, 225))
            if traj is not None:
                tr = traj[b]
                ok = ~np.isnan(tr).any(-1)
                pts = to_px(np.stack([tr[:, 0], np.zeros(T), tr[:, 1]], -1))
                for i in range(T - 1):
                    if ok[i] and ok[i + 1]:
                        d.line([pts[i], pts[i + 1]], fill=(230, 60, 60), width=2)
                for i in np.flatnonzero(ok & ~np.roll(ok, 1) & ~np.roll(ok, -1)):  # isolated given frames
                    x, y = pts[i]
                    d.ellipse([x - 3, y - 3, x + 3, y + 3], outline=(230, 60, 60), width=2)
            travelled = to_px(np.stack([pos[b, :t + 1, 0, 0], np.zeros(t + 1), pos[b, :t + 1, 0, 2]], -1))
            if len(travelled) > 1:
                d.line(travelled, fill=(120, 120, 120), width=1)
            joints = to_px(pos[b, t])
            for j, p in enumerate(PARENTS):
                if p < 0:
                    continue
                colour = (40, 90, 200) if j in _LEFT else (200, 90, 40) if j in _RIGHT else (30, 30, 30)
                d.line([joints[p], joints[j]], fill=colour, width=3)
            x, y = joints[15]
            d.ellipse([x - 5, y - 5, x + 5, y + 5], outline=(30, 30, 30), width=2)
            if labels is not None and b < len(labels):
                d.text((ox + 3, oy + 1), str(labels[b])[:cell // 6], fill="black")
        frames.append(img)
    path = Path(path)
    atomic_write(path, lambda tmp: frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                                                  duration=int(1000 / fps), loop=0))
    return path
