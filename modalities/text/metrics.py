"""Metrics for generated text: a genre judge trained on real Shakespeare, and distinct-n.

* **acc_genre**: how often a classifier trained on real passages assigns a sample the requested
  genre. The classifier is logistic regression on TF-IDF word 1–2 grams, trained on passages of
  the training plays and scored on the held-out plays (:data:`~.corpus.VAL_PLAYS`): unseen plots
  and character names, so its accuracy (:attr:`GenreJudge.real_accuracy`, about 0.53 against a
  chance of 1/3) is what real text of the requested genre would score.
* **distinct_1**, **distinct_2**: unique word n-grams / all word n-grams over every sample
  (words split at whitespace, case kept); low values mean repetitive or collapsed samples.
* fluency, by scorers that are not the model being judged (:mod:`.fluency`): **acc_genre_indep**
  (a naive Bayes genre classifier on word counts, also trained only on real passages),
  **vocab_share** (words of the plays), **ngram4_overlap** (4-grams of the plays), **ppl_ngram**
  (a Kneser–Ney word 3-gram model of the plays) and, given a scorer checkpoint, **ppl_ar**
  (per-token perplexity under that autoregressive model).

Passages are speeches cut at line breaks into at most ``words`` words (36 ≈ the 63 text tokens of
a 64-token window), so the judge does not depend on any tokenizer. The fitted classifier is
cached as plain arrays in an ``.npz`` file (the TF-IDF vocabulary and idf weights, the logistic
regression's coefficients; written atomically, read with ``allow_pickle=False``): a cache someone
sent you runs no code, unlike a pickle, which is refused. It is refitted in a few seconds if
missing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from framework.core.atomic import atomic_save
from framework.model.checkpoints import CheckpointError

from .codecs import media_to_texts
from .corpus import GENRES, load_speeches, split_by_play
from .fluency import fluency, independent_judge, lm_perplexity
from .passages import genre_passages

__all__ = ["GenreJudge", "LinearTextClassifier", "distinct_n", "genre_passages"]

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


def _fit(texts: Sequence[str], labels: np.ndarray) -> Any:
    """The sklearn pipeline: TF-IDF of word 1–2-grams, then logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    # balanced: the histories and tragedies have ~1.5× the comedies' passages
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                          LogisticRegression(C=0.3, max_iter=1000, class_weight="balanced"))
    return model.fit(list(texts), labels)


# the TfidfVectorizer settings that decide the features (the rest only shaped the fit)
_VECTORIZER = ("ngram_range", "sublinear_tf", "norm", "lowercase", "token_pattern", "analyzer",
               "strip_accents", "use_idf")
_ARRAYS = ("terms", "idf", "coef", "intercept", "classes", "config")


class LinearTextClassifier:
    """A fitted TF-IDF + linear classifier as plain arrays: no pickle, no code in the file.

    Features are sklearn's ``TfidfVectorizer`` with the fitted vocabulary and idf weights put back,
    so texts are tokenised exactly as in fitting; scores are ``X @ coef.T + intercept``
    (``[B, classes]``), as in ``LogisticRegression.decision_function``.
    """

    def __init__(self, terms: Sequence[str], idf: np.ndarray, coef: np.ndarray, intercept: np.ndarray,
                 classes: np.ndarray, config: Mapping[str, Any]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.coef, self.intercept = np.asarray(coef, np.float64), np.asarray(intercept, np.float64)
        self.classes, self.config = np.asarray(classes), dict(config)
        if self.coef.shape != (len(self.intercept), len(terms)) or len(idf) != len(terms):
            raise ValueError(f"inconsistent shapes: {len(terms)} terms, idf {np.shape(idf)}, "
                             f"coef {self.coef.shape}, intercept {self.intercept.shape}")
        if len(self.classes) != max(2, len(self.intercept)):
            raise ValueError(f"{len(self.classes)} classes for {len(self.intercept)} score rows")
        settings = {k: tuple(v) if k == "ngram_range" else v for k, v in self.config["vectorizer"].items()}
        self.vectorizer = TfidfVectorizer(vocabulary={t: i for i, t in enumerate(terms)}, **settings)
        self.vectorizer.idf_ = np.asarray(idf, np.float64)

    @classmethod
    def from_pipeline(cls, pipeline: Any) -> LinearTextClassifier:
        """From a fitted ``make_pipeline(TfidfVectorizer(...), LogisticRegression(...))``."""
        import sklearn

        vec, lr = pipeline[0], pipeline[-1]
        settings = {k: getattr(vec, k) for k in _VECTORIZER}
        settings["ngram_range"] = list(settings["ngram_range"])
        return cls(list(vec.get_feature_names_out()), vec.idf_, lr.coef_, lr.intercept_, lr.classes_,
                   {"vectorizer": settings, "sklearn": sklearn.__version__})

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """Class scores ``[B, classes]`` (``[B]`` for two classes, as sklearn)."""
        scores = np.asarray(self.vectorizer.transform(list(texts)) @ self.coef.T) + self.intercept
        return scores[:, 0] if len(self.classes) == 2 else scores

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Class labels ``[B]``."""
        scores = self.decision_function(texts)
        return self.classes[(scores > 0).astype(int) if scores.ndim == 1 else scores.argmax(1)]

    def save(self, path: Path | str) -> Path:
        """Write the arrays to ``path`` (``.npz``) atomically; terms as one UTF-8 text, ``\n``-joined."""
        terms = self.vectorizer.get_feature_names_out()
        if any("\n" in t for t in terms):
            raise ValueError("a term contains a newline; it cannot be stored \\n-joined")
        config = json.dumps(self.config).encode("utf-8")
        arrays = {"terms": np.frombuffer("\n".join(terms).encode("utf-8"), dtype=np.uint8),
                  "idf": self.vectorizer.idf_, "coef": self.coef, "intercept": self.intercept,
                  "classes": self.classes, "config": np.frombuffer(config, dtype=np.uint8)}
        return atomic_save(path, lambda f: np.savez_compressed(f, **arrays))

    @classmethod
    def load(cls, path: Path | str) -> LinearTextClassifier:
        """Read a :meth:`save` file; anything else (a pickle, damaged or foreign data) is refused
        with a :class:`~framework.model.checkpoints.CheckpointError` naming ``path``."""
        path = Path(path)
        where = f"judge cache {path}"
        if path.suffix in (".pkl", ".pickle"):
            raise CheckpointError(f"{where}: refused: pickled judges can run code when loaded; "
                                  "polyguide caches judges as .npz arrays")
        if not path.is_file():
            raise CheckpointError(f"{where}: no such file")
        with open(path, "rb") as f:
            head = f.read(2)
        if head[:1] == b"\x80":
            raise CheckpointError(f"{where}: refused: it is a pickle, which can run code when loaded")
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [k for k in _ARRAYS if k not in z.files]
                if missing:
                    raise CheckpointError(f"{where}: is not a polyguide judge (no {', '.join(missing)})")
                arrays = {k: z[k] for k in _ARRAYS}
            terms = arrays.pop("terms").tobytes().decode("utf-8").split("\n")
            config = json.loads(arrays.pop("config").tobytes().decode("utf-8"))
            return cls(terms, config=config, **arrays)
        except CheckpointError:
            raise
        except Exception as e:  # damaged zip, object arrays, wrong shapes or settings: all one answer
            text = str(e).strip().splitlines()
            raise CheckpointError(f"{where}: is damaged or not a polyguide judge "
                                  f"({text[0] if text else type(e).__name__})") from e


class GenreJudge:
    """Scores generated text with a cached genre classifier and distinct-n.

    Args:
        cache: the classifier's ``.npz`` file (:class:`LinearTextClassifier`); fitted on the training
            plays and written there if missing (a file there is loaded as is, whatever the other
            arguments: give each setting its own). Pickles are refused.
        words, min_words: passage size (see :func:`genre_passages`).
        shuffle_labels: fit on permuted labels (a control: its held-out accuracy is chance).
        seed: the permutation's seed.
        scorer: an autoregressive text checkpoint whose perplexity of the samples is reported as
            ``ppl_ar`` (loaded on first use); ``None``: no ``ppl_ar``.
    """

    def __init__(self, cache: Path | str, words: int = 36, min_words: int = 5,
                 shuffle_labels: bool = False, seed: int = 0, scorer: Path | str | None = None) -> None:
        cache = Path(cache)
        self.scorer_path, self._scorer = (Path(scorer) if scorer is not None else None), None
        train, val = split_by_play(load_speeches())
        if cache.exists() or cache.suffix != ".npz":
            self.model = LinearTextClassifier.load(cache)  # refuses pickles and damaged files
        else:
            texts, labels = genre_passages(train, words, min_words)
            if shuffle_labels:
                labels = np.random.default_rng(seed).permutation(labels)
            self.model = LinearTextClassifier.from_pipeline(_fit(texts, labels))
            self.model.save(cache)
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
        """``acc_genre`` and ``acc_genre_indep`` (if ``genre`` is requested: ``[B]`` ids),
        ``distinct_1``, ``distinct_2``, ``vocab_share``, ``ngram4_overlap``, ``ppl_ngram`` and, with a
        scorer, ``ppl_ar`` of generated texts (UTF-8 media ``[B, M]`` or strings). A requested
        ``speaker`` is not scored."""
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
            out["acc_genre_indep"] = independent_judge().accuracy(texts, want)
        out["distinct_1"] = distinct_n(texts, 1)
        out["distinct_2"] = distinct_n(texts, 2)
        out.update(fluency(texts))
        if self.scorer_path is not None:
            if self._scorer is None:
                from framework.training.module import load

                self._scorer = load(self.scorer_path)
            out["ppl_ar"] = lm_perplexity(self._scorer, texts)
        return out
