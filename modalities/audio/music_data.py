"""``MusicData``: 4-s clips of real melodies rendered with GM instruments, with their conditions.

Each clip takes a melody of one collection (``style``), starts at a random note, plays at a
tempo drawn from one of three bins (``tempo``) on one of six instruments (``instrument``), and
carries its own chromagram (``melody``, ``[32, 12]``) and optionally a caption such as
"a slow violin playing an Irish melody" embedded by MiniLM (``text``, ``[384]``).

Validation clips come from melodies that no training clip uses (every 8th melody of each style,
or the last one of a style with fewer than 8),
so the judge's and the model's scores are on unseen tunes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from framework.core.conditions import Conditions, ConditionSpec
from framework.training.data import SplitData

from .chroma import CHROMA_FRAMES, CLIP_SECONDS, chromagram
from .features import SAMPLE_RATE
from .music import INSTRUMENTS, STYLES, TEMPO_BPM, TEMPOS, Melodies, clip_notes, load_melodies, render

__all__ = ["MELODY_ENCODER", "TEXT_ENCODER", "MusicData", "caption", "music_specs", "render_clips"]

TEXT_ENCODER = "minilm"
MELODY_ENCODER = "audio/melody"
STYLE_WORDS = {"chorale": "a Bach chorale", "renaissance": "a Renaissance motet", "irish": "an Irish dance",
               "chinese": "a Chinese folk song"}
_TEMPLATES = ("a {tempo} {instrument} playing {style}", "{style} on the {instrument}, {tempo}",
              "a {tempo} {instrument} tune, {style}")
_VAL_EVERY = 8  # every 8th melody of a style is held out for validation


def caption(style: int, instrument: int, tempo: int, variant: int = 0) -> str:
    """A caption of one clip, e.g. ``"a slow violin playing an Irish dance"``."""
    return _TEMPLATES[variant % len(_TEMPLATES)].format(
        tempo=TEMPOS[tempo], instrument=INSTRUMENTS[instrument], style=STYLE_WORDS[STYLES[style]])


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


def _split_melodies(mel: Melodies, val: bool) -> np.ndarray:
    """Indices of the training (or validation) melodies: every 8th melody of a style is held out."""
    idx = []
    for s in range(len(STYLES)):
        ms = np.flatnonzero(mel.style == s)
        held = np.arange(len(ms)) % _VAL_EVERY == _VAL_EVERY - 1
        if len(ms) > 1 and not held.any():  # tiny sets still keep one unseen melody
            held[-1] = True
        idx.append(ms[held == val])
    return np.concatenate(idx)


def render_clips(mel: Melodies, n: int, seed: int, *, val: bool = False, seconds: float = CLIP_SECONDS
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[str]]:
    """``n`` clips: audio ``[n, 1, seconds · 16 kHz]`` float, labels ``{style, instrument, tempo}``
    (long ``[n]``) and captions. Styles, instruments and tempo bins are balanced and shuffled;
    deterministic for a seed."""
    rng = np.random.default_rng(seed)
    pool = _split_melodies(mel, val)
    by_style = [pool[mel.style[pool] == s] for s in range(len(STYLES))]
    if any(len(b) == 0 for b in by_style):
        raise ValueError(f"every style needs {'validation' if val else 'training'} melodies; "
                         f"load more per style")
    styles = rng.permutation(np.arange(n) % len(STYLES))
    instruments = rng.permutation(np.arange(n) % len(INSTRUMENTS))
    tempos = rng.permutation(np.arange(n) % len(TEMPOS))
    waves = np.zeros((n, 1, round(seconds * SAMPLE_RATE)), dtype=np.float32)
    captions = []
    for i in range(n):
        m = int(rng.choice(by_style[styles[i]]))
        notes = mel.melody(m)
        start = int(rng.integers(len(notes)))
        lo, hi = TEMPO_BPM[TEMPOS[tempos[i]]]
        inst = INSTRUMENTS[instruments[i]]
        bpm = float(rng.uniform(lo, hi))
        waves[i, 0] = render(clip_notes(notes, start, bpm, inst, seconds), inst, seconds)
        captions.append(caption(int(styles[i]), int(instruments[i]), int(tempos[i]), int(rng.integers(3))))
    labels = {"style": torch.from_numpy(styles).long(), "instrument": torch.from_numpy(instruments).long(),
              "tempo": torch.from_numpy(tempos).long()}
    return torch.from_numpy(waves), labels, captions


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
