"""Genre-labelled passages of the corpus: what the genre judges (ours and the independent one) train
and are scored on."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .corpus import GENRES, Speech, chunk_lines

__all__ = ["genre_passages"]


def genre_passages(speeches: Iterable[Speech], words: int = 36, min_words: int = 5
                   ) -> tuple[list[str], np.ndarray]:
    """Passages of at most ``words`` words (whole lines; shorter than ``min_words`` dropped) and
    their genre ids ``[N]``."""
    texts, labels = [], []
    for s in speeches:
        for chunk in chunk_lines(s.text, lambda line: len(line.split()), words):
            if len(chunk.split()) >= min_words:
                texts.append(chunk)
                labels.append(GENRES.index(s.genre))
    return texts, np.asarray(labels, dtype=np.int64)
