"""The genre judge and distinct-n: above chance on unseen plays, chance on shuffled labels."""

import pytest
import torch

from modalities.text import TextModality
from modalities.text.codecs import texts_to_media
from modalities.text.corpus import load_speeches, split_by_play
from modalities.text.metrics import GenreJudge, distinct_n, genre_passages


@pytest.fixture(scope="module")
def judge(text_cache, codec):
    return TextModality().judge({}, codec, text_cache)  # fits (a few seconds) and caches


@pytest.fixture(scope="module")
def val_passages():
    _, val = split_by_play(load_speeches())
    return genre_passages(val)


def test_distinct_n_on_known_strings():
    assert distinct_n(["a b a", "a b"], 1) == pytest.approx(2 / 5)
    assert distinct_n(["a b a", "a b"], 2) == pytest.approx(2 / 3)  # (a b) twice, (b a) once
    assert distinct_n(["to be or not to be"], 1) == pytest.approx(4 / 6)
    assert distinct_n(["to be or not to be"], 2) == pytest.approx(4 / 5)
    assert distinct_n(["", "one"], 2) == 0.0 and distinct_n([], 1) == 0.0


def test_judge_is_well_above_chance_on_held_out_plays(judge, val_passages):
    acc = judge.real_accuracy["genre"]
    print(f"held-out genre accuracy {acc:.3f}; confusion [true, predicted]:\n{judge.real_confusion}")
    assert acc > 0.45  # chance is 1/3; about 0.53 on passages of unseen plays
    assert (judge.real_confusion.diagonal() > judge.real_confusion.sum(1) / 3).all()  # every genre
    texts, labels = val_passages
    metrics = judge.evaluate(texts, {"genre": torch.as_tensor(labels)})
    assert metrics["acc_genre"] == pytest.approx(acc)
    fluency = {"vocab_share", "ngram4_overlap", "ppl_ngram", "ppl_ar"}  # ppl_ar: the shipped AR model
    assert set(metrics) == {"acc_genre", "acc_genre_indep", "distinct_1", "distinct_2", *fluency}
    assert metrics["vocab_share"] > 0.93 and metrics["ppl_ar"] < 150  # real text reads as English


def test_judge_with_shuffled_labels_is_at_chance(text_cache):
    control = GenreJudge(text_cache / "shuffled.npz", shuffle_labels=True)
    assert control.real_accuracy["genre"] < 0.42


def test_evaluate_takes_media_ignores_speaker_and_rejects_unknowns(judge, val_passages, text_cache, codec):
    texts, labels = val_passages
    texts, want = texts[:64], torch.as_tensor(labels[:64])
    from_media = judge.evaluate(texts_to_media(texts), {"genre": want, "speaker": torch.zeros(64)})
    assert from_media == judge.evaluate(texts, {"genre": want})
    assert set(judge.evaluate(texts, {})) == {"distinct_1", "distinct_2", "vocab_share", "ngram4_overlap",
                                              "ppl_ngram", "ppl_ar"}
    collapsed = judge.evaluate(["my lord, my lord, my lord"] * 8, {"genre": torch.zeros(8, dtype=torch.long)})
    assert collapsed["distinct_2"] < 0.1 < from_media["distinct_2"]
    with pytest.raises(ValueError, match="not \\['mood'\\]"):
        judge.evaluate(texts, {"mood": want})
    with pytest.raises(ValueError, match="shape"):
        judge.evaluate(texts, {"genre": want[:3]})
    again = TextModality().judge({}, codec, text_cache)  # loaded from the cache: same predictions
    assert torch.equal(again.predict(texts), judge.predict(texts))
    assert not list(text_cache.glob("*.tmp"))
