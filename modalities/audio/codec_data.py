"""Spoken words pre-encoded by the trained codec: batches of codes (or latents) instead of audio.

A model on the ``codec`` representation would otherwise run the codec's encoder on every batch,
which costs more than the model's own step on a CPU. :class:`WordsCodesData` encodes each split
once and caches it (``.npz`` beside the rendered clips, keyed by the codec's weights and
settings, written atomically, read without pickle); batches are ``{"x": [B, *codec.shape],
"conditions": {...}}``, the form :class:`~framework.training.module.GenerativeModule` trains on
directly. The model's own codec must be the same (same folder and settings) so its samples decode
with the codec the data was encoded with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from framework.core.atomic import atomic_write

from .codec import EncodecCodec, resolve_path
from .data import WordsData
from .speech import WordClips, default_cache_dir, load_words

__all__ = ["WordsCodesData", "cached_array", "encode_clips"]

def encode_clips(codec: EncodecCodec, audio: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Clips ``[N, 1, samples]`` → the codec's representation ``[N, *codec.shape]``, in batches."""
    return torch.cat([codec.encode(a) for a in audio.split(batch)])


def _codec_key(codec: EncodecCodec, settings: dict[str, Any]) -> str:
    """A digest of the codec's weights and statistics and of the settings, naming its cache files."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    folder = resolve_path(codec.path)
    for f in sorted(folder.iterdir()):
        if f.is_file() and not f.name.startswith("."):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def cached_array(path: Path, compute: Callable[[], np.ndarray]) -> torch.Tensor:
    """The array cached at ``path`` (``.npz``, key ``x``; read without pickle), or ``compute()``
    written there atomically first: encoded training clips are made once per machine."""
    if path.is_file():
        with np.load(path, allow_pickle=False) as f:
            return torch.from_numpy(f["x"])
    arr = compute()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append '.npz' to a bare name
            np.savez(f, x=arr)

    atomic_write(path, write)
    return torch.from_numpy(arr)


class _Encoded(Dataset):
    def __init__(self, x: torch.Tensor, clips: WordClips) -> None:
        self.x, self.clips = x, clips

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Any]:
        c = self.clips
        conditions = {"word": c.word[i], "speaker": c.speaker[i], "pitch": c.pitch[i]}
        return {"x": self.x[i], "conditions": conditions}


class WordsCodesData(WordsData):
    """:class:`~.data.WordsData` encoded once by a trained codec.

    Args:
        codec: the ``codec`` representation's arguments without ``name`` (``path``, ``layout``,
            ``codebooks``, ``samples``), exactly as in the model's ``representation``.
        n_train, n_val, batch_size, seed, cache_dir: as :class:`~.data.WordsData`.
    """

    def __init__(self, codec: dict[str, Any] | None = None, n_train: int = 4000, n_val: int = 400,
                 batch_size: int = 32, seed: int = 0, cache_dir: str | None = None) -> None:
        super().__init__(n_train, n_val, batch_size, seed, cache_dir)
        self.codec_args = dict(codec or {})
        self.codec_args.pop("name", None)

    def _encoded(self, codec: EncodecCodec, n: int, seed: int) -> tuple[torch.Tensor, WordClips]:
        clips = load_words(n, seed, self.cache_dir)
        settings = {"layout": codec.layout, "codebooks": codec.codebooks, "samples": codec.samples,
                    "n": n, "seed": seed}
        path = (self.cache_path or default_cache_dir()) / f"words-codes-{_codec_key(codec, settings)}.npz"
        dtype = np.int16 if codec.layout != "latents" else np.float32
        return cached_array(path, lambda: encode_clips(codec, clips.audio).numpy().astype(dtype)), clips

    def build(self) -> tuple[_Encoded, _Encoded]:
        codec = EncodecCodec(**self.codec_args)
        x_train, train = self._encoded(codec, self.n_train, self.seed)
        x_val, val = self._encoded(codec, self.n_val, self.seed + 1)
        if codec.layout != "latents":
            x_train, x_val = x_train.long(), x_val.long()
        return _Encoded(x_train, train), _Encoded(x_val, val)
