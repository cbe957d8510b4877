"""The genre judge's cache holds plain arrays: it predicts exactly as the sklearn pipeline it came
from, and a pickle (or anything else) in its place is refused without running."""

import pickle
import zipfile

import numpy as np
import pytest
import torch

from framework.cli.main import main
from framework.model.checkpoints import CheckpointError
from modalities.text.corpus import load_speeches, split_by_play
from modalities.text.metrics import GenreJudge, LinearTextClassifier, _fit, genre_passages
from modalities.text.plugin import RECIPES

SHIPPED = RECIPES / "checkpoints"


@pytest.fixture(scope="module")
def passages():
    train, val = split_by_play(load_speeches())
    return genre_passages(train), genre_passages(val)


def test_the_array_file_predicts_exactly_as_the_pipeline(passages, tmp_path):
    (texts, labels), (val_texts, _) = passages
    pick = np.random.default_rng(0).permutation(len(texts))[:4000]  # a quick fit on a subset
    pipeline = _fit([texts[i] for i in pick], labels[pick])
    path = LinearTextClassifier.from_pipeline(pipeline).save(tmp_path / "judge.npz")
    clf = LinearTextClassifier.load(path)
    np.testing.assert_array_equal(clf.predict(val_texts), pipeline.predict(val_texts))
    np.testing.assert_allclose(clf.decision_function(val_texts), pipeline.decision_function(val_texts),
                               rtol=0, atol=1e-12)
    with zipfile.ZipFile(path) as z:  # arrays only: no pickled object anywhere in the file
        assert sorted(z.namelist()) == sorted(f"{k}.npy" for k in
                                              ("terms", "idf", "coef", "intercept", "classes", "config"))


def test_the_shipped_judge_scores_its_documented_accuracy(passages):
    judge = GenreJudge(SHIPPED / "genre-judge.npz")
    assert round(judge.real_accuracy["genre"], 2) == 0.53  # docs/text.md
    assert not list(SHIPPED.glob("*.pkl"))


@pytest.mark.fault("malicious file")
@pytest.mark.parametrize("name", ["genre-judge.npz", "genre-judge.pkl"])
def test_a_pickled_judge_is_refused_and_runs_nothing(tmp_path, evil, name):
    marker = tmp_path / "PWNED"
    path = tmp_path / name
    path.write_bytes(pickle.dumps(evil(marker)))
    with pytest.raises(CheckpointError, match="refused") as info:
        GenreJudge(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


@pytest.mark.fault("malicious file")
def test_eval_refuses_a_pickled_judge_cache_before_sampling(tmp_path, evil, refusal):
    marker = tmp_path / "PWNED"
    (tmp_path / "genre-judge.npz").write_bytes(pickle.dumps(evil(marker)))
    argv = ["eval", "--checkpoint", str(SHIPPED / "shakespeare_ar.ckpt"), "--cache", str(tmp_path),
            "--n", "2", "--steps", "2", "--no-progress"]
    msg = refusal(lambda: main(argv))
    assert "refused" in msg and str(tmp_path / "genre-judge.npz") in msg
    assert not marker.exists()


def _arrays(**change):
    config = np.frombuffer(b'{"vectorizer": {}}', np.uint8)
    return {"terms": np.frombuffer(b"a\nb", np.uint8), "idf": np.ones(2), "coef": np.zeros((3, 2)),
            "intercept": np.zeros(3), "classes": np.arange(3), "config": config, **change}


def _object_array(p):
    np.savez(p, **_arrays(terms=np.array([{"a": 1}], dtype=object)))


def _missing_arrays(p):
    np.savez(p, idf=np.ones(3))


def _truncated(p):
    np.savez(p, **_arrays())
    p.write_bytes(p.read_bytes()[:100])


def _wrong_shapes(p):
    np.savez(p, **_arrays(idf=np.ones(5)))


BAD = {"empty": (lambda p: p.write_bytes(b""), "is damaged"),
       "text file": (lambda p: p.write_text("terms, idf\n"), "is damaged"),
       "truncated": (_truncated, "is damaged"),
       "object array": (_object_array, "is damaged"),
       "missing arrays": (_missing_arrays, "is not a polyguide judge (no terms, coef"),
       "inconsistent shapes": (_wrong_shapes, "inconsistent shapes"),
       "torch file": (lambda p: torch.save({"coef": torch.zeros(3)}, p), "is not a polyguide judge")}


@pytest.mark.fault("bad checkpoint file")
@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_judge_file_gets_one_line(tmp_path, case):
    make, expected = BAD[case]
    path = tmp_path / "genre-judge.npz"
    make(path)
    with pytest.raises(CheckpointError) as info:
        LinearTextClassifier.load(path)
    msg = str(info.value)
    assert expected in msg and str(path) in msg and "\n" not in msg, msg
