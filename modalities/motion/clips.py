"""Procedural motion clips: positions, labels, captions and contacts from the clip generator,
cached atomically as ``.npz``, and the captions' MiniLM embeddings.

The source of both :class:`~.data.MotionData` and the motion judge's training and reference clips
(:meth:`~.metrics.MotionJudge.cached`), kept apart from the data module so that the judge does not
import the data module that builds it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from framework.core.atomic import atomic_write

from .actions import ACTIONS, FRAMES, SPEEDS, generate_clip
from .captions import caption

__all__ = ["DATA_VERSION", "caption_embeddings", "generate", "load_or_generate"]

DATA_VERSION = "v2"  # bumped when the generator changes (v2: no one-frame pelvis drops), so caches renew


def generate(n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` clips from seed ``seed``: positions ``[n, T, 22, 3]``, ``action``/``speed`` ids ``[n]``,
    ``caption`` strings ``[n]`` and contacts ``[n, T, 2]``."""
    rng = np.random.default_rng(seed)
    pos, act, spd, cap, con = [], [], [], [], []
    for _ in range(n):
        clip = generate_clip(rng)
        pos.append(clip.positions.numpy())
        con.append(clip.contacts.numpy())
        act.append(ACTIONS.index(clip.action))
        spd.append(SPEEDS.index(clip.speed))
        cap.append(caption(clip.segments, rng))
    return {"positions": np.stack(pos).astype(np.float32), "action": np.array(act), "speed": np.array(spd),
            "caption": np.array(cap), "contacts": np.stack(con)}


def load_or_generate(n: int, seed: int, cache_dir: Path | None) -> dict[str, np.ndarray]:
    """:func:`generate`, cached as ``cache_dir/clips-<version>-<T>-<n>-<seed>.npz`` (written atomically)."""
    if cache_dir is None:
        return generate(n, seed)
    path = Path(cache_dir) / f"clips-{DATA_VERSION}-{FRAMES}-{n}-{seed}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    data = generate(n, seed)
    atomic_write(path, lambda tmp: _savez(tmp, data))
    return data


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a path
        np.savez(f, **arrays)


def _save(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would append ".npy" to a path
        np.save(f, array)


def caption_embeddings(captions: np.ndarray, cache: Path | None) -> torch.Tensor:
    """MiniLM embeddings ``[n, 384]`` of ``captions``; cached as ``.npy`` (atomically) if ``cache`` is set."""
    if cache is not None and cache.exists():
        emb = np.load(cache, allow_pickle=False)
        if emb.shape == (len(captions), 384):
            return torch.from_numpy(emb)
    from framework.core.minilm import minilm_model  # the core "minilm" encoder's model, batched

    unique, inverse = np.unique(np.asarray(captions, dtype=str), return_inverse=True)
    emb = minilm_model().encode(list(unique), batch_size=64)[torch.from_numpy(inverse.reshape(-1))]
    if cache is not None:
        atomic_write(cache, lambda tmp: _save(tmp, emb.numpy()))
    return emb
