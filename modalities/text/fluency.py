"""Fluency of generated text, measured against the plays with scorers that are not our models.

* **vocab_share**: the fraction of a sample's words that are words of the training plays
  (words: lower-cased runs of letters with inner apostrophes, so "O'er" is ``o'er``; a sample
  with no word counts as 0). Real held-out passages score about 0.97: the rest are names and
  rare words of the unseen plays.
* **ngram4_overlap**: the fraction of a sample set's word 4-grams that occur in the training plays
  (copying scores 1, word salad in the plays' vocabulary close to 0).
* **ppl_ngram**: perplexity per word under :class:`KneserNey`, an interpolated Kneser–Ney word
  3-gram model of the training plays built here (open vocabulary: a word it never saw gets the
  uniform floor's share, about ``1/V``, so a non-word costs as much as the rarest word).
* :func:`lm_perplexity`: perplexity per token under an autoregressive model (the shipped one),
  null conditions: how likely another model finds the samples.
* :class:`IndependentGenreJudge`: a multinomial naive Bayes classifier on word counts (scikit-learn),
  trained on real passages of the training plays, never on model outputs; a second opinion
  beside the TF-IDF + logistic-regression :class:`~.metrics.GenreJudge`.

Everything here is deterministic and built from the corpus in a few seconds (cached per process).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .corpus import GENRES, Speech, load_speeches, split_by_play

__all__ = ["IndependentGenreJudge", "KneserNey", "fluency", "independent_judge", "invented_words",
           "kneser_ney", "lm_perplexity", "play_vocabulary", "real_reference", "words"]

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
BOS, EOS = "<s>", "</s>"


def words(text: str) -> list[str]:
    """Lower-cased words of ``text``: runs of letters, inner apostrophes kept (``o'er``, ``is't``)."""
    return _WORD.findall(text.lower())


@lru_cache(maxsize=1)
def _train_speeches() -> tuple[Speech, ...]:
    return tuple(split_by_play(load_speeches())[0])


@lru_cache(maxsize=1)
def play_vocabulary() -> frozenset[str]:
    """Every word of the training plays."""
    return frozenset(w for s in _train_speeches() for w in words(s.text))


@lru_cache(maxsize=1)
def _play_4grams() -> frozenset[tuple[str, ...]]:
    grams = set()
    for s in _train_speeches():
        w = words(s.text)
        grams.update(zip(w, w[1:], w[2:], w[3:], strict=False))
    return frozenset(grams)


class KneserNey:
    """Interpolated Kneser–Ney word 3-gram model (discount ``D``), open vocabulary.

    Trained on word lists (each a speech, padded with ``<s> <s>`` and ended by ``</s>``). The
    lowest order interpolates the continuation unigram with a uniform over the vocabulary plus
    one unknown word, so every word, seen or not, has a probability.
    """

    def __init__(self, sentences: Iterable[Sequence[str]], discount: float = 0.75) -> None:
        self.D = float(discount)
        tri: Counter = Counter()
        for sent in sentences:
            w = [BOS, BOS, *sent, EOS]
            tri.update(zip(w, w[1:], w[2:], strict=False))
        self.tri = tri
        self.ctx2: Counter = Counter()      # c(u v ·)
        self.types2: Counter = Counter()    # |{w: c(u v w) > 0}|
        cont2: Counter = Counter()          # N1+(· v w)
        for (u, v, _w), c in tri.items():
            self.ctx2[u, v] += c
            self.types2[u, v] += 1
        for (_u, v, w) in tri:
            cont2[v, w] += 1
        self.cont2 = cont2
        self.ctx1: Counter = Counter()      # N1+(· v ·)
        self.types1: Counter = Counter()    # |{w: N1+(· v w) > 0}|
        cont1: Counter = Counter()          # N1+(· w)
        for (v, w), c in cont2.items():
            self.ctx1[v] += c
            self.types1[v] += 1
            cont1[w] += 1
        self.cont1, self.total1 = cont1, sum(cont1.values())
        self.vocab = {w for (_u, _v, w) in tri} | {BOS}
        self.floor = 1.0 / (len(self.vocab) + 1)

    def _p1(self, w: str) -> float:
        mass = self.D * len(self.cont1) / self.total1
        return max(self.cont1.get(w, 0) - self.D, 0) / self.total1 + mass * self.floor

    def _p2(self, v: str, w: str) -> float:
        n = self.ctx1.get(v, 0)
        if not n:
            return self._p1(w)
        return (max(self.cont2.get((v, w), 0) - self.D, 0) / n
                + self.D * self.types1[v] / n * self._p1(w))

    def prob(self, u: str, v: str, w: str) -> float:
        """``p(w | u v)``."""
        n = self.ctx2.get((u, v), 0)
        if not n:
            return self._p2(v, w)
        return (max(self.tri.get((u, v, w), 0) - self.D, 0) / n
                + self.D * self.types2[u, v] / n * self._p2(v, w))

    def nll(self, sent: Sequence[str]) -> float:
        """Total negative log-probability (nats) of ``sent``'s words after ``<s> <s>`` (no ``</s>``:
        samples are windows that may end mid-speech)."""
        w = [BOS, BOS, *sent]
        return -sum(math.log(self.prob(w[i - 2], w[i - 1], w[i])) for i in range(2, len(w)))

    def perplexity(self, texts: Iterable[str]) -> float:
        """Per-word perplexity over all ``texts`` (``inf`` when they hold no word)."""
        total, n = 0.0, 0
        for text in texts:
            ws = words(text)
            total += self.nll(ws)
            n += len(ws)
        return math.exp(total / n) if n else math.inf


@lru_cache(maxsize=1)
def kneser_ney() -> KneserNey:
    """The 3-gram model of the training plays (built on first use, ~10 s)."""
    return KneserNey(words(s.text) for s in _train_speeches())


def invented_words(texts: Iterable[str]) -> Counter:
    """Words of ``texts`` that are not words of the training plays, with their counts."""
    vocab = play_vocabulary()
    return Counter(w for t in texts for w in words(t) if w not in vocab)


def fluency(texts: Sequence[str]) -> dict[str, float]:
    """``vocab_share`` (mean over samples), ``ngram4_overlap`` (over all 4-grams) and ``ppl_ngram``."""
    vocab, grams4 = play_vocabulary(), _play_4grams()
    shares, hits, total = [], 0, 0
    for text in texts:
        w = words(text)
        shares.append(sum(x in vocab for x in w) / len(w) if w else 0.0)
        g = list(zip(w, w[1:], w[2:], w[3:], strict=False))
        hits += sum(x in grams4 for x in g)
        total += len(g)
    return {"vocab_share": float(np.mean(shares)) if shares else 0.0,
            "ngram4_overlap": hits / total if total else 0.0,
            "ppl_ngram": kneser_ney().perplexity(texts)}


@torch.no_grad()
def lm_perplexity(model, texts: Sequence[str], batch: int = 64) -> float:
    """Per-token perplexity of ``texts`` under an autoregressive text model (null conditions;
    each text encoded with the model's codec, end token included, at most its length ``L``)."""
    from framework.core.conditions import Conditions

    total, tokens = 0.0, 0
    for i in range(0, len(texts), batch):
        x = model.codec.encode_texts(list(texts[i:i + batch])).to(model.device)  # [B, L]
        conds = Conditions.from_raw(model.specs, {}, x.shape[0]).to(model.device)
        logits = model.backbone(model.family.with_bos(x)[:, :-1], None, conds)  # [B, L, V]
        nll = F.cross_entropy(logits.transpose(1, 2).float(), x, reduction="none")  # [B, L]
        valid = x != model.codec.pad_id  # text and end token; padding after the end is not scored
        total += float((nll * valid).sum())
        tokens += int(valid.sum())
    return math.exp(total / tokens) if tokens else math.inf


class IndependentGenreJudge:
    """Multinomial naive Bayes on word unigram counts, trained on real passages of the training
    plays (the same passages as :class:`~.metrics.GenreJudge`, a different model family and
    features). ``real_accuracy``: its accuracy on passages of the held-out plays."""

    def __init__(self, words_per_passage: int = 36) -> None:
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.naive_bayes import MultinomialNB
        from sklearn.pipeline import make_pipeline

        from .passages import genre_passages

        train, val = split_by_play(load_speeches())
        texts, labels = genre_passages(train, words_per_passage)
        self.model = make_pipeline(CountVectorizer(min_df=2), MultinomialNB(alpha=0.5, fit_prior=False))
        self.model.fit(texts, labels)
        texts, labels = genre_passages(val, words_per_passage)
        self.real_accuracy = float((self.model.predict(texts) == labels).mean())

    def accuracy(self, texts: Sequence[str], genre: torch.Tensor) -> float:
        """How often the requested ``genre`` ids ``[B]`` are predicted for ``texts``."""
        return float((torch.as_tensor(self.model.predict(list(texts))) == genre.cpu()).float().mean())


@lru_cache(maxsize=1)
def independent_judge() -> IndependentGenreJudge:
    """The fitted :class:`IndependentGenreJudge` (a few seconds, once per process)."""
    return IndependentGenreJudge()


def real_reference(n: int = 240) -> list[str]:
    """``n`` real passages of the held-out plays (genres interleaved), for reference rows."""
    from .passages import genre_passages

    texts, labels = genre_passages(split_by_play(load_speeches())[1])
    per = [[t for t, y in zip(texts, labels, strict=True) if y == g] for g in range(len(GENRES))]
    rng = np.random.default_rng(0)
    picks = [list(rng.permutation(len(p))) for p in per]
    return [per[i % 3][picks[i % 3][i // 3]] for i in range(n)]

