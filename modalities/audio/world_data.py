"""Training data for the ``world`` representation: spoken words analysed by WORLD once and cached.

Kept apart from :mod:`.world` (the codec) because data modules import Lightning, and sampling
must not (the codec is all ``sample`` needs).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

from .codec_data import WordsCodesData, _Encoded, cached_array, encode_clips
from .speech import WordClips, default_cache_dir, load_words
from .world import STATS, World

__all__ = ["WordsWorldData"]


class WordsWorldData(WordsCodesData):
    """Spoken words (:class:`~.data.WordsData`) encoded once into WORLD features and cached
    (``words-world-<digest>.npz`` beside the rendered clips, keyed by the settings and the
    statistics file; written atomically, read without pickle). Batches are ``{"x": [B, *shape],
    "conditions": {...}}``, as :class:`~.codec_data.WordsCodesData` serves codes.

    Args:
        world: the ``world`` representation's arguments without ``name``, exactly as the model's.
        n_train, n_val, batch_size, seed, cache_dir: as :class:`~.data.WordsData`.
    """

    def __init__(self, world: dict[str, Any] | None = None, n_train: int = 4000, n_val: int = 400,
                 batch_size: int = 32, seed: int = 0, cache_dir: str | None = None) -> None:
        super().__init__(world, n_train, n_val, batch_size, seed, cache_dir)

    def _world(self, codec: World, n: int, seed: int) -> tuple[torch.Tensor, WordClips]:
        clips = load_words(n, seed, self.cache_dir)
        h = hashlib.sha256(json.dumps({**self.codec_args, "n": n, "seed": seed}, sort_keys=True).encode())
        h.update(STATS.read_bytes() if STATS.is_file() else b"")
        path = (self.cache_path or default_cache_dir()) / f"words-world-{h.hexdigest()[:12]}.npz"
        return cached_array(path, lambda: encode_clips(codec, clips.audio).numpy()), clips

    def build(self) -> tuple[_Encoded, _Encoded]:
        codec = World(**self.codec_args)
        return (_Encoded(*self._world(codec, self.n_train, self.seed)),
                _Encoded(*self._world(codec, self.n_val, self.seed + 1)))
