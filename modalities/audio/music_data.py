"""``MusicData``: 4-s clips of real melodies rendered with GM instruments, with their conditions.

Each clip takes a melody of one collection (``style``), starts at a random note, plays at a
tempo drawn from one of three bins (``tempo``) on one of six instruments (``instrument``), and
carries its own chromagram (``melody``, ``[32, 12]``) and optionally a caption such as
"a slow violin playing an Irish melody" embedded by MiniLM (``text``, ``[384]``).

Validation clips come from melodies that no training clip uses (:func:`~.music_clips.split_melodies`),
so the judge's and the model's scores are on unseen tunes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from framework.core.conditions import Conditions, ConditionSpec
from framework.training.data import SplitData

from .chroma import CHROMA_FRAMES, chromagram
from .music import INSTRUMENTS, STYLES, TEMPOS, Melodies, load_melodies
from .music_clips import caption, render_clips

__all__ = ["MELODY_ENCODER", "TEXT_ENCODER", "MusicData", "caption", "music_specs", "render_clips"]

TEXT_ENCODER = "minilm"
MELODY_ENCODER = "audio/melody"


def music_specs(text: bool = True, melody: bool = True) -> dict[str, ConditionSpec]:
    """Condition specs of :class:`MusicData` (``melody``: chromagram ``[32, 12]`` with frame-index
    positions, so the model knows when each note sounds; ``text``: MiniLM)."""
    specs = {"style": ConditionSpec("style", labels=STYLES),
             "instrument": ConditionSpec("instrument", labels=INSTRUMENTS),
             "tempo": ConditionSpec("tempo", labels=TEMPOS)}
    if melody:
        specs["melody"] = ConditionSpec("melody", kind="sequence", dim=12, encoder=MELODY_ENCODER,
                                         positions=True)
    if text:
        specs["text"] = ConditionSpec("text", kind="vector", dim=384, encoder=TEXT_ENCODER)
    return specs


class _Clips(Dataset):
    """Clips stored as 16-bit PCM (a quarter of float32 memory) with per-clip conditions."""

    def __init__(self, waves: torch.Tensor, conditions: dict[str, torch.Tensor]) -> None:
        self.pcm = (waves.clamp(-1, 1) * 32767).round().short()
        self.conditions = conditions

    def __len__(self) -> int:
        return self.pcm.shape[0]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"media": self.pcm[i].float() / 32767,
                "conditions": {k: v[i] for k, v in self.conditions.items()}}


class MusicData(SplitData):
    """Rendered music clips ``{"media": [B, 1, 64000], "conditions": {...}}``.

    Args:
        n_train, n_val: clips per split (rendered with seeds ``seed`` and ``seed + 1``).
        per_style: melodies parsed per style (cached; see :func:`~.music.load_melodies`).
        batch_size: training batch size.
        text: add the ``text`` condition (a caption embedded by MiniLM, ``[384]``).
        melody: add the ``melody`` condition (the clip's chromagram, ``[32, 12]``).
        cache_dir: where the parsed melodies are cached (default ``~/.cache/polyguide``).
        judge_dir: where the music judge that :meth:`score` uses is cached (default: the shipped
            ``recipes/audio/checkpoints``).
        coarse_judge: score with the coarse music judge (log-mels at the ``mel`` representation's
            resolution, ``judge-music-coarse.pt``), which still hears style after Griffin-Lim
            decoding; ``False``: the default judge ``judge-music.pt`` that ``polyguide eval`` uses.

    With a recipe's ``val_guidance``, training samples :meth:`val_conditions` (real held-out
    requests) and logs :meth:`score`'s guided style/instrument accuracy and melody similarity.
    """

    def __init__(self, n_train: int = 2000, n_val: int = 256, per_style: int = 120, batch_size: int = 32,
                 text: bool = True, melody: bool = True, cache_dir: str | None = None, seed: int = 0,
                 judge_dir: str | None = None, coarse_judge: bool = True) -> None:
        super().__init__(batch_size, seed)
        self.n_train, self.n_val, self.per_style = n_train, n_val, per_style
        self.text, self.melody, self.cache_dir = text, melody, cache_dir
        self.judge_dir, self.coarse_judge = judge_dir, coarse_judge
        self.specs = music_specs(text, melody)
        self._requests: dict[int, Conditions] = {}
        self._judge = None

    def melodies(self) -> Melodies:
        return load_melodies(self.per_style, Path(self.cache_dir) if self.cache_dir else None)

    def clips(self, n: int, seed: int, val: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Audio ``[n, 1, 64000]`` and every condition's values for one split."""
        waves, conds, captions = render_clips(self.melodies(), n, seed, val=val)
        if self.melody:
            conds["melody"] = chromagram(waves, frames=CHROMA_FRAMES)
        if self.text:
            from framework.core.encoders import resolve

            conds["text"] = resolve(TEXT_ENCODER)(captions)
        return waves, conds

    def build(self) -> tuple[_Clips, _Clips]:
        return (_Clips(*self.clips(self.n_train, self.seed, False)),
                _Clips(*self.clips(self.n_val, self.seed + 1, True)))

    def split(self, name: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """A whole split (``"train"`` or ``"val"``): audio ``[N, 1, T]`` and condition values."""
        self.setup()
        data = {"train": self._train, "val": self._val}[name]
        return data.pcm.float() / 32767, data.conditions

    def val_conditions(self, n: int) -> Conditions:
        """``n`` real held-out requests (melodies no training clip uses, render seed ``seed + 2``):
        every condition of the clips (``style``, ``instrument``, ``tempo`` ``[n]``; ``melody``
        ``[n, 32, 12]`` and ``text`` ``[n, 384]`` when enabled), as a training batch carries them."""
        if n not in self._requests:
            _, conds = self.clips(n, self.seed + 2, True)
            self._requests[n] = Conditions(conds)
        return self._requests[n]

    def score(self, media: torch.Tensor, conditions: Conditions) -> dict[str, float]:
        """The music judge's scores of decoded clips ``media`` ``[n, 1, 64000]`` for the requests
        ``conditions`` (from :meth:`val_conditions`): ``acc_style``, ``acc_instrument``,
        ``acc_all``, ``melody_sim`` (with a melody condition), ``fd`` and ``diversity``."""
        if self._judge is None:
            from framework.core.shipped import recipes_dir

            from .metrics import music_judge

            where = Path(self.judge_dir) if self.judge_dir else Path(recipes_dir("audio")) / "checkpoints"
            self._judge = music_judge(where, melody_cache=self.cache_dir, coarse=self.coarse_judge)
        wanted = ("style", "instrument", "melody")
        requested = {k: conditions.values[k].cpu() for k in wanted if k in conditions.values}
        return self._judge.evaluate(media.cpu(), requested)
