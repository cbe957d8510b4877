"""Metrics for generated text: a genre judge trained on real Shakespeare, and distinct-n.

* **acc_genre**: how often a classifier trained on real passages assigns a sample the requested
  genre. The classifier is logistic regression on TF-IDF word 1–2 grams, trained on passages of
  the training plays and scored on the held-out plays (:data:`~.corpus.VAL_PLAYS`): unseen plots
  and character names, so its accuracy (:attr:`GenreJudge.real_accuracy`, about 0.53 against a
  chance of 1/3) is what real text of the requested genre would score.
* **distinct_1**, **distinct_2**: unique word n-grams / all word n-grams over every sample
  (words split at whitespace, case kept); low values mean repetitive or collapsed samples.

Passages are speeches cut at line breaks into at most ``words`` words (36 ≈ the 63 text tokens of
a 64-token window), so the judge does not depend on any tokenizer. The fitted classifier is
cached as a pickle (our own file, written atomically) and refitted in a few seconds if missing.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from framework.atomic import atomic_write

from .codecs import media_to_texts
from .corpus import GENRES, Speech, chunk_lines, load_speeches, split_by_play

__all__ = ["GenreJudge", "distinct_n", "genre_passages"]

UNJUDGED = frozenset({"speaker"})  # conditions the judge accepts in `requested` but does not score


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Unique word ``n``-grams / total word ``n``-grams over all ``texts`` (0 when there are none)."""
    total, unique = 0, set()
    for text in texts:
        words = text.split()
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        total += len(grams)
        unique.update(grams)
    return len(unique) / total if total else 0.0


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


def _fit(texts: Sequence[str], labels: np.ndarray) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    # balanced: the histories and tragedies have ~1.5× the comedies' passages
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                          LogisticRegression(C=0.3, max_iter=1000, class_weight="balanced"))
    return model.fit(list(texts), labels)


class GenreJudge:
    """Scores generated text with a cached genre classifier and distinct-n.

    Args:
        cache: the classifier pickle; fitted on the training plays and written there if missing
            (a file there is loaded as is, whatever the other arguments: give each setting its own).
        words, min_words: passage size (see :func:`genre_passages`).
        shuffle_labels: fit on permuted labels (a control: its held-out accuracy is chance).
        seed: the permutation's seed.
    """

    def __init__(self, cache: Path | str, words: int = 36, min_words: int = 5,
                 shuffle_labels: bool = False, seed: int = 0) -> None:
        cache = Path(cache)
        train, val = split_by_play(load_speeches())
        if cache.exists():
            with open(cache, "rb") as f:
                self.model = pickle.load(f)
        else:
            texts, labels = genre_passages(train, words, min_words)
            if shuffle_labels:
                labels = np.random.default_rng(seed).permutation(labels)
            self.model = _fit(texts, labels)
            atomic_write(cache, lambda tmp: tmp.write_bytes(pickle.dumps(self.model)))
        texts, labels = genre_passages(val, words, min_words)
        predicted = self.model.predict(texts)
        self.real_accuracy = {"genre": float((predicted == labels).mean())}
        self.real_confusion = np.zeros((len(GENRES), len(GENRES)), dtype=np.int64)  # [true, predicted]
        np.add.at(self.real_confusion, (labels, predicted), 1)

    def predict(self, media: torch.Tensor | Sequence[str]) -> torch.Tensor:
        """Genre ids ``[B]`` of texts (UTF-8 media ``[B, M]`` or strings)."""
        texts = media_to_texts(media)
        return torch.as_tensor(self.model.predict(texts), dtype=torch.long) if texts else \
            torch.zeros(0, dtype=torch.long)

    def evaluate(self, media: torch.Tensor | Sequence[str], requested: Mapping[str, torch.Tensor]
                 ) -> dict[str, float]:
        """``acc_genre`` (if ``genre`` is requested: ``[B]`` ids), ``distinct_1`` and ``distinct_2`` of
        generated texts (UTF-8 media ``[B, M]`` or strings). A requested ``speaker`` is not scored."""
        unknown = set(requested) - {"genre"} - UNJUDGED
        if unknown:
            raise ValueError(f"the text judge scores 'genre', not {sorted(unknown)}")
        texts = media_to_texts(media)
        out: dict[str, float] = {}
        if "genre" in requested:
            want = requested["genre"].cpu().long()
            if want.shape != (len(texts),):
                raise ValueError(f"requested genre has shape {tuple(want.shape)} for {len(texts)} texts")
            out["acc_genre"] = float((self.predict(texts) == want).float().mean())
        out["distinct_1"] = distinct_n(texts, 1)
        out["distinct_2"] = distinct_n(texts, 2)
        return out
