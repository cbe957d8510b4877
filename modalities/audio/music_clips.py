"""Rendered music clips: real melodies played at a tempo on a GM instrument, with their labels
and captions. The source of both :class:`~.music_data.MusicData` and the music judge's training
clips (:func:`~.metrics.music_judge`), kept apart from the data module so that the judge does not
import the data module that builds it.

Validation clips come from melodies that no training clip uses (every 8th melody of each style,
or the last one of a style with fewer than 8).
"""

from __future__ import annotations

import numpy as np
import torch

from .chroma import CLIP_SECONDS
from .features import SAMPLE_RATE
from .music import INSTRUMENTS, STYLES, TEMPO_BPM, TEMPOS, Melodies, clip_notes, render

__all__ = ["STYLE_WORDS", "caption", "render_clips", "split_melodies"]

STYLE_WORDS = {"chorale": "a Bach chorale", "renaissance": "a Renaissance motet", "irish": "an Irish dance",
               "chinese": "a Chinese folk song"}
_TEMPLATES = ("a {tempo} {instrument} playing {style}", "{style} on the {instrument}, {tempo}",
              "a {tempo} {instrument} tune, {style}")
_VAL_EVERY = 8  # every 8th melody of a style is held out for validation


def caption(style: int, instrument: int, tempo: int, variant: int = 0) -> str:
    """A caption of one clip, e.g. ``"a slow violin playing an Irish dance"``."""
    return _TEMPLATES[variant % len(_TEMPLATES)].format(
        tempo=TEMPOS[tempo], instrument=INSTRUMENTS[instrument], style=STYLE_WORDS[STYLES[style]])


def split_melodies(mel: Melodies, val: bool) -> np.ndarray:
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
    pool = split_melodies(mel, val)
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
