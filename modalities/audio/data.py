"""The spoken-words data module: eSpeak NG clips of zero … nine with ``word``, ``speaker`` and
``pitch`` conditions.

Batches are ``{"media": [B, 1, 16000] float in [−1, 1], "conditions": {"word": [B], "speaker":
[B], "pitch": [B]}}`` (label indices into :data:`~.speech.WORDS`, :data:`~.speech.SPEAKERS`,
:data:`~.speech.PITCHES`); the model's codec turns media into its representation. The training
and validation sets are different render seeds, so no clip is shared; both are cached on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from framework.core.conditions import ConditionSpec
from framework.training.data import SplitData

from .speech import PITCHES, SPEAKERS, WORDS, WordClips, load_words

__all__ = ["WordsData", "words_specs"]


def words_specs() -> dict[str, ConditionSpec]:
    """The condition specs of the spoken words: ``word``, ``speaker``, ``pitch`` (categorical)."""
    return {"word": ConditionSpec("word", labels=WORDS), "speaker": ConditionSpec("speaker", labels=SPEAKERS),
            "pitch": ConditionSpec("pitch", labels=PITCHES)}


class _Clips(Dataset):
    def __init__(self, clips: WordClips) -> None:
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict[str, Any]:
        c = self.clips
        return {"media": c.audio[i], "conditions": {"word": c.word[i], "speaker": c.speaker[i],
                                                    "pitch": c.pitch[i]}}


class WordsData(SplitData):
    """Spoken digits (:mod:`.speech`): 1-s clips at 16 kHz.

    Args:
        n_train, n_val: split sizes (render seeds ``seed`` and ``seed + 1``).
        batch_size: training batch size.
        cache_dir: where rendered sets are cached (default ``~/.cache/polyguide/audio``).
    """

    def __init__(self, n_train: int = 4000, n_val: int = 400, batch_size: int = 32, seed: int = 0,
                 cache_dir: str | None = None) -> None:
        super().__init__(batch_size, seed)
        if n_train < 1 or n_val < 1:
            raise ValueError(f"n_train and n_val must be ≥ 1, got {n_train} and {n_val}")
        self.n_train, self.n_val, self.cache_dir = int(n_train), int(n_val), cache_dir
        self.specs = words_specs()

    def build(self) -> tuple[_Clips, _Clips]:
        return (_Clips(load_words(self.n_train, self.seed, self.cache_dir)),
                _Clips(load_words(self.n_val, self.seed + 1, self.cache_dir)))

    def split(self, name: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """A whole split (``"train"`` or ``"val"``): audio ``[N, 1, 16000]`` and labels ``{name: [N]}``."""
        if name not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {name!r}")
        self.setup()
        clips = (self._train if name == "train" else self._val).clips
        return clips.audio, clips.conditions()

    @property
    def cache_path(self) -> Path | None:
        return Path(self.cache_dir) if self.cache_dir else None
