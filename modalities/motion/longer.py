"""Clips of any length from the fixed-length motion models, and export at other frame rates.

The shipped models generate ``FRAMES`` = 64 frames (3.2 s at 20 fps). A longer clip is made of
overlapping windows: each window after the first is sampled with its first ``overlap`` frames
*in-painted* from the previous window's last frames, through the model's own sampler:

- flow models (continuous tokens: ``rotations``, ``features``): replacement in-painting — before
  every step the known tokens of ``x_t`` are set to ``(1 − t)·x_known + t·ε`` (the flow's own
  interpolation, one fixed ``ε`` per window), so the network sees the known frames at every noise
  level and generates the rest to continue them;
- masked models (VQ ids): the known ids are given and only the rest is unmasked (``init``).

The windows' per-frame features are local (root velocities in the facing frame, heights,
rotations), so the clip is the concatenation of their tokens — the first window whole, then each
window's tokens after the overlap — decoded once as a whole (a VQ or autoencoder decoder is
convolutional): the root path integrates across the joins. A clip shorter than one
window is the first ``T`` frames of one window. :func:`seam_acceleration` measures the joins.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from framework.core.errors import ArgumentError

from .actions import FPS, FRAMES

__all__ = ["EXPORT_FPS", "MAX_SECONDS", "LongSample", "check_fps", "check_seconds", "resample",
           "sample_long", "seam_acceleration", "window_starts"]

MAX_SECONDS = 60.0
EXPORT_FPS = (20, 30, 60)
OVERLAP = 16  # frames in-painted from the previous window (0.8 s)


def check_seconds(seconds: Any) -> int:
    """``--seconds`` → frames at 20 fps; a one-line :class:`ArgumentError` for a bad value."""
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        raise ArgumentError(f"--seconds {seconds!r}: expected a number of seconds") from None
    if not math.isfinite(s) or s < 1.0 / FPS or s > MAX_SECONDS:
        raise ArgumentError(f"--seconds {seconds}: a motion clip is {1 / FPS:.2f} to "
                            f"{MAX_SECONDS:.0f} s long")
    return max(1, round(s * FPS))


def check_fps(fps: Any) -> int:
    """``--fps`` → an export frame rate in :data:`EXPORT_FPS`; a one-line error otherwise."""
    try:
        f = int(fps)
    except (TypeError, ValueError):
        raise ArgumentError(f"--fps {fps!r}: expected one of {', '.join(map(str, EXPORT_FPS))}") from None
    if (f != fps and str(f) != str(fps)) or f not in EXPORT_FPS:
        raise ArgumentError(f"--fps {fps}: motion is exported at {', '.join(map(str, EXPORT_FPS))} fps")
    return f


def window_starts(frames: int, window: int = FRAMES, overlap: int = OVERLAP) -> list[int]:
    """Start frames of the windows that cover ``frames`` frames (each window after the first
    begins ``overlap`` frames before the previous one ends)."""
    starts, end = [0], window
    while end < frames:
        starts.append(end - overlap)
        end = starts[-1] + window
    return starts


@dataclass
class LongSample:
    """A long clip: ``positions`` ``[n, T, 22, 3]`` (20 fps), the ``joins`` (first new frame of
    each window after the first), the step statistics of all windows in turn and their seconds."""

    positions: torch.Tensor
    joins: list[int]
    stats: list
    seconds: float
    windows: int

    @property
    def nfe(self) -> int:
        """Network evaluations of all windows."""
        return sum(s.nfe for s in self.stats)


def _features(model, x: torch.Tensor) -> torch.Tensor:
    """A sequence of the model's tokens ``[n, L, ...]`` of any length ``L`` → raw per-frame features
    ``[n, L·k, D]``, decoded as a whole (the VQ / autoencoder decoder is convolutional, so a long
    sequence decodes without seams of its own)."""
    from .stats import feature_stats

    codec = model.codec
    if hasattr(codec, "vq"):
        inner = codec._features
        if hasattr(codec, "vocab_size"):  # Tokens: ids
            norm = codec.vq.decode(x.long())
        else:  # Latent: normalised latents
            norm = codec.vq.decode_latents(x * codec.vq.latent_std.to(x) + codec.vq.latent_mean.to(x))
    else:  # Features / Rotations: k frames a token
        inner, norm = codec, x.reshape(x.shape[0], -1, codec.dim)
    mean, std = feature_stats(str(inner.stats))
    return norm * std.to(norm) + mean.to(norm)


def _to_positions(model, feats: torch.Tensor) -> torch.Tensor:
    return getattr(model.codec, "_features", model.codec).to_positions(feats)


def _inpaint_flow(model, known: torch.Tensor, k: int, n: int, steps: int, seed: int):
    """``init`` and ``callback`` that keep tokens ``[:, :k]`` on the path to ``known`` ``[n, k, D]``."""
    gen = torch.Generator().manual_seed(seed)
    shape = tuple(model.shape)
    init = torch.randn((n, *shape), generator=gen)
    eps = torch.randn((n, k, shape[-1]), generator=gen)
    ts = model.family.times(steps, torch.device("cpu"))
    init[:, :k] = (1 - ts[0]) * known + ts[0] * eps

    def callback(i: int, x: torch.Tensor, out: Any) -> None:
        t = float(ts[i + 1])
        x[:, :k] = ((1 - t) * known + t * eps).to(x)

    return init, callback


def sample_long(model, raw: Mapping[str, Any] | Sequence[Mapping[str, Any]], guidance, *, frames: int, n: int,
                seed: int, steps: int, overlap: int = OVERLAP, weak=None, progress: bool = False,
                sample: Callable[..., Any] | None = None) -> LongSample:
    """Sample ``n`` clips of ``frames`` frames (20 fps) from a fixed-length motion model.

    Args:
        model: a motion :class:`~framework.model.generative.GenerativeModel` (flow or masked).
        raw: raw condition values for every window, or one mapping per window (composition:
            window ``w`` asks for ``raw[min(w, len(raw) − 1)]``).
        guidance: the guidance expression (text or parsed) for every window.
        frames: the clip length in frames (any ≥ 1).
        overlap: frames each window in-paints from the previous one (a multiple of the
            representation's frames per token).
        sample: ``sample(model, raw, guidance, n=, seed=, steps=, weak=, init=, callback=, progress=)``
            → :class:`~framework.generators.SampleOutput` (default: ``model.sample`` checked by
            :func:`~framework.evaluation.sample_checked`).

    Returns:
        :class:`LongSample` with positions ``[n, frames, 22, 3]``.
    """
    from framework.evaluation import sample_checked

    sample = sample or sample_checked
    per_window = [raw] if isinstance(raw, Mapping) else list(raw)
    if not per_window:
        raise ArgumentError("no conditions for the windows of a long clip")
    family = model.hparams.get("family")
    window = FRAMES
    k_frames = window // int(model.shape[0])  # frames per token
    if overlap % k_frames or not 0 < overlap < window:
        raise ValueError(f"overlap {overlap} must be a positive multiple of {k_frames} below {window}")
    k = overlap // k_frames
    for name in ("trajectory", "joints"):
        if any(name in r for r in per_window) and frames != window:
            raise ArgumentError(f"--seconds with a {name} condition: a {name} request is {window} frames "
                                f"({window / FPS:.1f} s); leave --seconds out or the {name} condition")
    starts = window_starts(frames, window, overlap)
    tokens, prev, stats, secs = [], None, [], 0.0
    for w, _start in enumerate(starts):
        cond = per_window[min(w, len(per_window) - 1)]
        wseed = (seed + 7919 * w) % (2 ** 31)
        kwargs: dict[str, Any] = {}
        if prev is not None:
            if family == "masked":
                init = torch.full((n, *model.shape), model.family.mask_id, dtype=torch.long)
                init[:, :k] = prev[:, -k:]
                kwargs["init"] = init
            else:
                kwargs["init"], kwargs["callback"] = _inpaint_flow(model, prev[:, -k:].float().cpu(), k, n,
                                                                   steps, wseed)
        out = sample(model, cond, guidance, n=n, seed=wseed, steps=steps, weak=weak, progress=progress,
                     **kwargs)
        x = out.samples.cpu()
        if prev is not None and family == "masked":
            x[:, :k] = prev[:, -k:]  # the given ids stay given
        tokens.append(x if prev is None else x[:, k:])
        prev, secs = x, secs + out.seconds
        stats += list(out.stats)
    with torch.no_grad():
        positions = _to_positions(model, _features(model, torch.cat(tokens, 1))[:, :frames])
    joins = [s + overlap for s in starts[1:] if s + overlap < frames]
    return LongSample(positions, joins, stats, secs, len(starts))


def seam_acceleration(positions: torch.Tensor, joins: Sequence[int], fps: int = FPS) -> float:
    """Mean joint acceleration at the joins of a long clip ``[n, T, 22, 3]`` (the two frames either
    side of each join) over the mean elsewhere (:func:`~.physics.join_acceleration`; 1 is seamless)."""
    from .physics import join_acceleration

    window = torch.zeros(positions.shape[1])
    for j in joins:
        window[j:] += 1  # the window each frame comes from
    return join_acceleration(positions, (window % 2 == 1)[None].expand(positions.shape[0], -1), fps)


def resample(positions: torch.Tensor, fps: int, source_fps: int = FPS) -> torch.Tensor:
    """Positions ``[n, T, 22, 3]`` at ``source_fps`` → ``[n, T', 22, 3]`` at ``fps`` (linear
    interpolation in time; ``T' = (T − 1)·fps/source_fps + 1``)."""
    if fps == source_fps:
        return positions
    T = positions.shape[1]
    out_t = torch.arange((T - 1) * fps // source_fps + 1, dtype=torch.float64) * source_fps / fps
    lo = out_t.floor().long().clamp(max=T - 1)
    hi = (lo + 1).clamp(max=T - 1)
    a = (out_t - lo).to(positions.dtype)[None, :, None, None]
    return positions[:, lo] * (1 - a) + positions[:, hi] * a
