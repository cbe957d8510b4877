"""Fluency measures with scorers that are not our models: words and 4-grams of the plays, a
Kneser–Ney 3-gram model of the plays, an independent genre classifier, the AR model's perplexity."""

import math
from pathlib import Path

import pytest
import torch

from modalities.text.fluency import (
    KneserNey,
    fluency,
    independent_judge,
    invented_words,
    kneser_ney,
    lm_perplexity,
    real_reference,
    words,
)

AR = Path(__file__).resolve().parents[3] / "recipes/text/checkpoints/shakespeare_ar.ckpt"
SALAD = ["th; needs, so my.,B'sGive toru myenown", "Givees seekg. madam he bes Cassio:ve what. need"]


def test_words_are_lowercased_letter_runs_with_inner_apostrophes():
    got = words("O'er the hills, 'tis Is't -- MACBETH!")
    assert got == ["o'er", "the", "hills", "tis", "is't", "macbeth"]


def test_kneser_ney_is_a_distribution_over_the_vocabulary_and_one_unknown_word():
    lm = KneserNey([["to", "be", "or", "not", "to", "be"], ["to", "sleep"], ["be", "not", "afraid"]])
    for ctx in [("to", "be"), ("<s>", "<s>"), ("never", "seen"), ("not", "to")]:
        total = sum(lm.prob(*ctx, w) for w in lm.vocab | {"</s>"}) + lm.prob(*ctx, "zzz-unknown")
        assert total == pytest.approx(1.0, abs=1e-9), ctx
    assert lm.prob("to", "be", "or") > lm.prob("to", "be", "sleep") > lm.prob("to", "be", "zzz")


def test_real_passages_are_fluent_and_word_salad_is_not():
    real = real_reference(60)
    good, bad = fluency(real), fluency(SALAD)
    assert good["vocab_share"] > 0.93 and bad["vocab_share"] < 0.75
    assert good["ngram4_overlap"] > 0.01 and bad["ngram4_overlap"] == 0.0
    assert good["ppl_ngram"] * 10 < bad["ppl_ngram"]
    shuffled = [" ".join(sorted(t.split())) for t in real]  # the same words, in no order
    assert fluency(shuffled)["ppl_ngram"] > 1.5 * good["ppl_ngram"]
    assert fluency(shuffled)["ngram4_overlap"] < good["ngram4_overlap"] / 2
    assert kneser_ney().perplexity([]) == math.inf
    assert set(invented_words(SALAD)) >= {"toru", "myenown", "givees", "seekg"}
    assert not invented_words(["To be, or not to be"])


def test_independent_genre_judge_is_above_chance_on_held_out_plays():
    judge = independent_judge()
    assert judge.real_accuracy > 0.45  # chance 1/3
    real = real_reference(90)
    genre = torch.arange(90) % 3
    assert judge.accuracy(real, genre) > judge.accuracy(real, (genre + 1) % 3)


def test_the_ar_model_finds_real_text_likelier_than_word_salad():
    from framework.training.module import load

    model = load(AR)
    real = lm_perplexity(model, real_reference(30))
    assert real < 150 < lm_perplexity(model, SALAD)
