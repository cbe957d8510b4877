"""Motion metrics, judged by a network trained on real procedural motion.

* ``acc_action``: a 1-D CNN's action accuracy on the generated motion;
* ``r_precision_top1`` / ``top3``: text–motion retrieval in a joint embedding trained
  (contrastively, CLIP-style) on real caption–motion pairs — as motion papers report it: each
  motion ranks its own caption among 32 (itself + 31 others of the batch);
* ``fd``: Fréchet distance between the judge's motion features of generated and real clips;
* ``diversity``: mean feature distance between random pairs of samples, relative to real clips;
* ``traj_error``: mean distance (m) of the root's ground path to the requested one, over the
  frames the request gives;
* ``foot_skating``: the fraction of frame pairs in which a toe that stays below 5 cm moves more
  than 2.5 cm on the ground (0.5 m/s at 20 fps);
* the rule-based physics of :func:`~modalities.motion.physics.physics` (``accel``, ``lowest_toe``,
  ``penetration``, ``bone_cv``, ``collapses``), which need no network;
* ``diversity_request`` (when several samples answer the same request): the mean pose distance
  between samples of one request, relative to that between real clips of the same action
  (:func:`request_diversity`).

The judge is trained once (about a minute) and cached atomically; it loads with ``weights_only``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from framework.core.atomic import atomic_write

from .actions import ACTIONS
from .costs import path_error
from .features import DIM, positions_to_features
from .physics import physics
from .skating import foot_skating

__all__ = ["MotionJudge", "foot_skating", "pose_distance", "r_precision", "request_diversity",
           "trajectory_error"]

POOL = 32
PHYSICS = ("accel", "lowest_toe", "penetration", "bone_cv", "collapses")  # beside foot_skating


def pose_distance(motions: torch.Tensor) -> float:
    """Mean joint distance (m) between all pairs of motions ``[K, T, 22, 3]``, frame by frame, of
    the poses: joints relative to the pelvis's ground position (its height kept); NaN for fewer than 2."""
    k = motions.shape[0]
    if k < 2:
        return float("nan")
    pose = motions.clone()
    pose[..., [0, 2]] -= motions[..., :1, [0, 2]]
    flat = pose.reshape(k, -1, 3)
    d = (flat[:, None] - flat[None]).norm(dim=-1).mean(-1)  # [K, K]
    return float(d.sum() / (k * (k - 1)))


def _request_groups(requested: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
    """Indices of samples that share one request (all requested values equal), groups of 2 or more."""
    n = next(iter(requested.values())).shape[0]
    keys: dict[bytes, list[int]] = {}
    for i in range(n):
        key = b"".join(v[i].detach().cpu().contiguous().numpy().tobytes() for v in requested.values())
        keys.setdefault(key, []).append(i)
    return [torch.tensor(g) for g in keys.values() if len(g) > 1]


def request_diversity(media: torch.Tensor, requested: Mapping[str, torch.Tensor],
                      real: torch.Tensor, real_action: torch.Tensor) -> float | None:
    """Diversity within requests: for each group of samples ``[N, T, 22, 3]`` that share one request,
    their mean pose distance divided by that of the real clips ``[M, T, 22, 3]`` of the request's
    action (``real_action`` ``[M]``; all real clips if the request has no action); averaged over
    requests whose real clips vary (by 1 cm or more: all real ``sit_down`` clips are the same).
    ``None`` when no such request repeats."""
    ratios = []
    for g in _request_groups(requested):
        same = real if "action" not in requested else real[real_action == requested["action"][g[0]].cpu()]
        ref = pose_distance(same[:64])
        if ref >= 0.01:
            ratios.append(pose_distance(media[g]) / ref)
    return float(np.mean(ratios)) if ratios else None


def trajectory_error(positions: torch.Tensor, request: torch.Tensor) -> float:
    """Mean root path error (m) of ``[B, T, 22, 3]`` against trajectory tokens ``[B, T, DIM]``."""
    return float(path_error(positions[:, :, 0, [0, 2]], request).mean())


def r_precision(motion: torch.Tensor, text: torch.Tensor, pool: int = POOL, top: tuple[int, ...] = (1, 3)
                ) -> dict[int, float]:
    """R-precision of matched embeddings ``[N, E]``: in consecutive groups of ``pool`` (or all ``N``
    if fewer), how often a motion's own text ranks within the ``k`` nearest texts."""
    n = motion.shape[0]
    pool = min(pool, n)
    hits = {k: [] for k in top}
    for s in range(0, n - pool + 1, pool):
        m, t = motion[s:s + pool], text[s:s + pool]
        d = torch.cdist(m, t)  # [pool, pool]
        rank = (d < d.diagonal()[:, None]).sum(-1)  # texts strictly closer than the true one
        for k in top:
            hits[k].append((rank < k).float())
    return {k: float(torch.cat(v).mean()) for k, v in hits.items()}


class JudgeNet(nn.Module):
    """Motion features ``[B, T, 71]`` (normalised) → penultimate features, action logits, embedding;
    caption embeddings ``[B, 384]`` → the same embedding space."""

    def __init__(self, width: int = 96, features: int = 128, embed: int = 64,
                 actions: int = len(ACTIONS)) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(DIM, width, 5, padding=2), nn.GELU(),
            nn.Conv1d(width, width, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv1d(width, width * 2, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv1d(width * 2, width * 2, 3, stride=2, padding=1), nn.GELU())
        self.pool = nn.Sequential(nn.Flatten(), nn.LazyLinear(features), nn.GELU())
        self.action = nn.Linear(features, actions)
        self.motion_proj = nn.Linear(features, embed)
        self.text_proj = nn.Sequential(nn.Linear(384, 256), nn.GELU(), nn.Linear(256, embed))
        self.forward(torch.zeros(1, 64, DIM))  # materialise the lazy layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(x.transpose(1, 2)))

    def embed_motion(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.motion_proj(h), dim=-1)

    def embed_text(self, t: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(t), dim=-1)


def _normalised(positions: torch.Tensor) -> torch.Tensor:
    from .stats import feature_stats

    mean, std = feature_stats()
    return (positions_to_features(positions.float()) - mean) / std


class MotionJudge:
    """Scores generated motion against real motion with a cached :class:`JudgeNet`.

    Args:
        real: training clips: positions ``[N, T, 22, 3]``, action ids ``[N]``, caption embeddings
            ``[N, 384]`` (unused when ``cache`` exists).
        held_out: a held-out real split of the same form (reference statistics, judge accuracy).
        cache: the judge's weights file; trained and written there if missing.
    """

    def __init__(self, real: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                 held_out: tuple[torch.Tensor, torch.Tensor, torch.Tensor], cache: Path | str | None,
                 epochs: int = 12, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.net = JudgeNet()
        cache = Path(cache) if cache is not None else None
        if cache is not None and cache.exists():
            self.net.load_state_dict(torch.load(cache, map_location="cpu", weights_only=True))
        else:
            self._train(real, epochs, seed)
            if cache is not None:
                atomic_write(cache, lambda tmp: torch.save(self.net.state_dict(), tmp))
        self.net.eval()
        pos, act, txt = held_out
        with torch.no_grad():
            h = self.net(_normalised(pos))
            self.real_features = h
            self.real_accuracy = float((self.net.action(h).argmax(-1) == act).float().mean())
            rp = r_precision(self.net.embed_motion(h), self.net.embed_text(txt))
        self.real_r_precision = rp
        self.real_skating = foot_skating(pos)
        self.real_positions, self.real_action = pos, act
        self.real_physics = physics(pos)

    @classmethod
    def cached(cls, cache_dir: Path, n_train: int = 4000, n_held: int = 512) -> MotionJudge:
        """The standard judge: trained on ``n_train`` clips (seed 777), referenced on ``n_held`` (seed 778),
        cached as ``cache_dir/motion-judge.pt``."""
        from .clips import caption_embeddings, load_or_generate

        def split(n: int, seed: int):
            d = load_or_generate(n, seed, None)
            return (torch.from_numpy(d["positions"]), torch.from_numpy(d["action"]).long(),
                    caption_embeddings(d["caption"], None))

        path = Path(cache_dir) / "motion-judge.pt"
        real = split(n_train, 777) if not path.exists() else None
        return cls(real, split(n_held, 778), path)

    def _train(self, real, epochs: int, seed: int) -> None:
        pos, act, txt = real
        x = _normalised(pos)
        g = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(self.net.parameters(), lr=2e-3, weight_decay=1e-4)
        scale = np.log(1 / 0.07)
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=g).split(64):
                xb = x[idx] + 0.05 * torch.randn(x[idx].shape, generator=g)  # robust to sampler noise
                h = self.net(xb)
                loss = F.cross_entropy(self.net.action(h), act[idx])
                m, t = self.net.embed_motion(h), self.net.embed_text(txt[idx])
                logits = m @ t.T * np.exp(scale)
                # captions repeat: pairs with identical captions are not negatives
                same = (txt[idx] @ txt[idx].T) > 0.9999
                logits = logits.masked_fill(same & ~torch.eye(len(idx), dtype=torch.bool), -1e4)
                target = torch.arange(len(idx))
                loss = loss + (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
                opt.zero_grad()
                loss.backward()
                opt.step()

    @torch.no_grad()
    def evaluate(self, media: torch.Tensor, requested: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """Metrics of generated motion ``[N, T, 22, 3]``.

        ``requested`` may hold ``action`` ids ``[N]``, ``text`` caption embeddings ``[N, 384]`` and
        ``trajectory`` tokens ``[N, T, DIM]`` and ``joints`` targets ``[N, T, DIM]``; each present one
        adds its metrics.
        """
        media = media.float().cpu()
        if not torch.isfinite(media).all():
            raise ValueError("generated motion contains NaN or infinite joint positions")
        h = self.net(_normalised(media))
        out: dict[str, float] = {}
        if "action" in requested:
            right = self.net.action(h).argmax(-1) == requested["action"].cpu()
            out["acc_action"] = float(right.float().mean())
        if "text" in requested:
            rp = r_precision(self.net.embed_motion(h), self.net.embed_text(requested["text"].float().cpu()))
            out["r_precision_top1"], out["r_precision_top3"] = rp[1], rp[3]
        if "trajectory" in requested:
            out["traj_error"] = trajectory_error(media, requested["trajectory"].float().cpu())
        if "joints" in requested:  # metres, at the given (frame, joint) pairs
            from .costs import joint_error

            out["joint_error"] = float(joint_error(media, requested["joints"].float().cpu()).mean())
        from framework.evaluation.metrics import frechet_distance

        out["fd"] = frechet_distance(h, self.real_features)
        out["diversity"] = _pair_spread(h) / _pair_spread(self.real_features)
        out["foot_skating"] = foot_skating(media)
        if requested:
            within = request_diversity(media, requested, self.real_positions, self.real_action)
            if within is not None:
                out["diversity_request"] = within
        out |= {k: v for k, v in physics(media).items() if k in PHYSICS}
        return out


def _pair_spread(feats: torch.Tensor, pairs: int = 300, seed: int = 0) -> float:
    """Mean distance between ``pairs`` random pairs of rows (the motion papers' diversity)."""
    g = torch.Generator().manual_seed(seed)
    n = feats.shape[0]
    a, b = torch.randint(n, (pairs,), generator=g), torch.randint(n, (pairs,), generator=g)
    keep = a != b
    return float((feats[a[keep]] - feats[b[keep]]).norm(dim=-1).mean())
