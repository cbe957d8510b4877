"""Procedural motion data: the clips (:mod:`.clips`, cached atomically as ``.npz``) as a data module.

Batches are ``{"media": [B, T, 22, 3] joint positions, "conditions": {...}}`` with the
conditions ``action`` and ``speed`` (label ids), ``text`` (the caption's MiniLM embedding
``[B, 384]``) and ``trajectory`` (``[B, T, DIM]`` tokens of the root path; a fraction of the
samples get a sparse path with only a few frames given).

For validation while training (``val_guidance``), :meth:`MotionData.val_conditions` gives the
held-out clips' own requests and :meth:`MotionData.score` judges guided samples against them
with the motion judge (:class:`~modalities.motion.metrics.MotionJudge`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import StackDataset

from framework.core.conditions import Conditions, ConditionSpec
from framework.core.shipped import recipes_dir
from framework.training.data import SplitData

from .actions import ACTIONS, FRAMES, SPEEDS
from .clips import DATA_VERSION, caption_embeddings, generate, load_or_generate
from .joints import DIM as JOINTS_DIM
from .joints import encode_joints, random_targets
from .trajectory import DIM as TRAJ_DIM
from .trajectory import encode_trajectory

# generate, load_or_generate, caption_embeddings and DATA_VERSION live in .clips (re-exported here)
__all__ = ["DATA_VERSION", "MotionData", "caption_embeddings", "generate", "load_or_generate", "motion_specs",
           "sparsify"]

DEFAULT_CACHE = Path.home() / ".cache" / "polyguide" / "motion"
CONDITIONS = ("action", "speed", "text", "trajectory")  # the default; "joints" on request
JUDGED = ("action", "text", "trajectory", "joints")  # the conditions the judge has a metric for (not speed)


def motion_specs(names: Sequence[str] = CONDITIONS) -> dict[str, ConditionSpec]:
    """Condition specs of the motion data, for the conditions ``names``."""
    all_specs = {"action": ConditionSpec("action", labels=ACTIONS),
                 "speed": ConditionSpec("speed", labels=SPEEDS),
                 "text": ConditionSpec("text", kind="vector", dim=384, encoder="minilm"),
                 "trajectory": ConditionSpec("trajectory", kind="sequence", dim=TRAJ_DIM,
                                             encoder="motion/trajectory"),
                 "joints": ConditionSpec("joints", kind="sequence", dim=JOINTS_DIM, encoder="motion/joints")}
    unknown = set(names) - set(all_specs)
    if unknown:
        raise ValueError(f"unknown motion conditions {sorted(unknown)}; choose from {sorted(all_specs)}")
    return {n: all_specs[n] for n in names}


def sparsify(given: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Keep 1, 4 or 8 random frames (the last one always) of a ``given`` mask ``[T]``."""
    T = given.shape[0]
    k = int(rng.choice([1, 4, 8]))
    keep = rng.choice(T - 1, size=k - 1, replace=False) if k > 1 else np.array([], dtype=int)
    out = torch.zeros(T)
    out[torch.as_tensor(np.append(keep, T - 1))] = 1.0
    return out


class MotionData(SplitData):
    """Procedural motion clips with conditions.

    Args:
        conditions: which conditions batches carry (of ``action``, ``speed``, ``text``, ``trajectory``,
            ``joints``: random joint targets taken from the clip itself,
            :func:`~modalities.motion.joints.random_targets`).
        n_train, n_val: split sizes (generated with seeds ``seed`` and ``seed + 1``).
        batch_size: training batch size.
        sparse: fraction of samples whose trajectory is sparse (a few frames given).
        cache_dir: where generated clips are cached (``None``: no cache).
        judge_dir: the folder of the judge that :meth:`score` uses (``motion-judge.pt``, trained
            there if missing); default: the shipped ``recipes/motion/checkpoints`` if present (the
            judge of ``polyguide eval`` and the report), else ``cache_dir``.
        judge_reference: held-out real clips the judge's reference statistics (FD, diversity) use;
            512 is the report's, fewer only for quick tests.
    """

    def __init__(self, conditions: Sequence[str] = CONDITIONS, n_train: int = 6000, n_val: int = 500,
                 batch_size: int = 64, sparse: float = 0.25, seed: int = 0,
                 cache_dir: str | None = str(DEFAULT_CACHE), judge_dir: str | None = None,
                 judge_reference: int = 512) -> None:
        super().__init__(batch_size, seed)
        self.names = tuple(conditions)
        self.specs = motion_specs(self.names)
        self.n_train, self.n_val, self.sparse = n_train, n_val, sparse
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.judge_dir = Path(judge_dir).expanduser() if judge_dir else None
        self.judge_reference = judge_reference
        self._judge = None

    def _split(self, n: int, seed: int) -> StackDataset:
        data = load_or_generate(n, seed, self.cache_dir)
        media = torch.from_numpy(data["positions"])
        conds: dict[str, torch.Tensor] = {}
        if "action" in self.names:
            conds["action"] = torch.from_numpy(data["action"]).long()
        if "speed" in self.names:
            conds["speed"] = torch.from_numpy(data["speed"]).long()
        if "text" in self.names:
            conds["text"] = caption_embeddings(data["caption"], self.cache_dir and
                                               self.cache_dir / f"minilm-{FRAMES}-{n}-{seed}.npy")
        if "trajectory" in self.names:
            rng = np.random.default_rng(seed + 7)
            path = media[:, :, 0, [0, 2]]
            given = torch.ones(n, FRAMES)
            for i in range(n):
                if rng.random() < self.sparse:
                    given[i] = sparsify(given[i], rng)
            conds["trajectory"] = encode_trajectory(torch.cat([path, given[..., None]], -1))
        if "joints" in self.names:  # targets from the clip itself: joints, key poses or a prefix
            rng = np.random.default_rng(seed + 11)
            conds["joints"] = encode_joints(torch.stack([random_targets(m, rng) for m in media]))
        return StackDataset(media=media, conditions=StackDataset(**conds))  # items are batch dicts

    def build(self) -> tuple[StackDataset, StackDataset]:
        return self._split(self.n_train, self.seed), self._split(self.n_val, self.seed + 1)

    def split(self, name: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """A whole split (``"train"`` or ``"val"``): media ``[N, T, 22, 3]`` and condition values."""
        self.setup()
        data = {"train": self._train, "val": self._val}[name]
        conds = data.datasets["conditions"].datasets
        return data.datasets["media"], dict(conds)

    def val_conditions(self, n: int) -> Conditions:
        """The first ``n`` validation clips' own requests, ``[n]``-batched: for each condition this
        module carries, the clip's action / speed id, caption embedding ``[n, 384]`` or root path
        ``[n, T, DIM]`` (sparse for the ``sparse`` fraction, as in training). Held out from
        training, and real: a caption and a path that belong together, which random draws are not.

        Raises:
            ValueError: ``n`` exceeds the validation split (``n_val``).
        """
        if not 1 <= n <= self.n_val:
            raise ValueError(f"val_samples={n}: the motion validation split has n_val={self.n_val} clips; "
                             f"ask for 1..{self.n_val} or raise data.init_args.n_val")
        self.setup()
        conds = self._val.datasets["conditions"].datasets
        return Conditions({k: v[:n] for k, v in conds.items()})

    def score(self, media: torch.Tensor, conditions: Conditions) -> dict[str, float]:
        """The motion judge's metrics of generated clips ``[n, T, 22, 3]`` asked for ``conditions``
        (:meth:`val_conditions`): ``acc_action``, ``r_precision_top1/3``, ``traj_error`` for the
        conditions carried, and ``fd``, ``diversity``, ``foot_skating`` always
        (:meth:`~modalities.motion.metrics.MotionJudge.evaluate`)."""
        requested = {k: conditions.values[k] for k in JUDGED if k in conditions.values}
        return self.judge().evaluate(media, requested)

    def judge(self):
        """The :class:`~modalities.motion.metrics.MotionJudge` of :meth:`score`, built once."""
        if self._judge is None:
            from .metrics import MotionJudge

            shipped = recipes_dir("motion") / "checkpoints"
            folder = self.judge_dir or (shipped if shipped.is_dir() else self.cache_dir or DEFAULT_CACHE)
            self._judge = MotionJudge.cached(folder, n_held=self.judge_reference)
        return self._judge
