"""framework.evaluation: every condition kind a judge declares is requested and scored (scalar ones
through the judge's request hook), and a condition eval does not score is said, never dropped."""

from __future__ import annotations

import warnings

import pytest
import torch

from framework.core.conditions import ConditionError
from framework.evaluation import (
    UnscoredConditionWarning,
    evaluate,
    format_table,
    markdown_table,
    random_requests,
    scored_conditions,
)
from framework.model.generative import GenerativeModel

CONDS = [{"name": "c", "labels": ["a", "b"]}, {"name": "amp", "kind": "scalar"},
         {"name": "emb", "kind": "vector", "dim": 3}]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GenerativeModel(family="flow", shape=[4, 2], conditions=CONDS,
                           backbone={"dim": 16, "depth": 1, "heads": 2})


class LabelJudge:
    """Scores categorical conditions only (no request hook)."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def evaluate(self, media, requested):
        self.seen.append(dict(requested))
        return {"score": float(media.mean())}


class AmpJudge(LabelJudge):
    """Also scores the scalar ``amp``: draws amplitudes in [0.5, 2] and reports their mean."""

    conditions = ("c", "amp")

    def request(self, name, n, generator):
        return None if name != "amp" else 0.5 + 1.5 * torch.rand(n, generator=generator)

    def evaluate(self, media, requested):
        super().evaluate(media, requested)
        return {"score": float(media.mean()), "amp_mean": float(requested["amp"].mean())}


def test_a_judge_scores_a_scalar_condition_through_its_request_hook(model, monkeypatch):
    judge, given = AmpJudge(), []
    sample = model.sample
    monkeypatch.setattr(model, "sample", lambda conds, g, **kw: given.append(conds) or sample(conds, g, **kw))
    with pytest.warns(UnscoredConditionWarning, match="condition 'emb' is not scored: the judge scores only"):
        rows = evaluate(model, {"both": "cfg((c, amp), 2)", "label": "cfg(c, 2)"}, n=6, steps=2, seed=0,
                        cache_dir=None, judge=judge)
    assert set(judge.seen[0]) == {"c", "amp"} and judge.seen[0]["amp"].dtype == torch.float32
    assert 0.5 <= float(judge.seen[0]["amp"].min()) and float(judge.seen[0]["amp"].max()) <= 2.0
    assert bool(given[0].present["amp"].all()) and not bool(given[0].present["emb"].any())
    assert torch.equal(given[0].values["amp"], judge.seen[0]["amp"])  # sampled with what is scored
    assert rows[0]["amp_mean"] == pytest.approx(float(judge.seen[0]["amp"].mean()))
    assert [r["expression"] for r in rows] == ["cfg((c, amp), 2)", "cfg(c, 2)"]
    again = random_requests(model.specs, ["c", "amp"], 6, 0, judge)
    assert torch.equal(again["amp"], judge.seen[0]["amp"]) and torch.equal(again["c"], judge.seen[0]["c"])


def test_conditions_a_judge_cannot_score_are_named_never_dropped_silently(model):
    scored, unscored = scored_conditions(model.specs, LabelJudge())
    assert scored == ["c"] and set(unscored) == {"amp", "emb"}
    assert "a scalar condition, and the judge has no request(name, n, generator) hook" in unscored["amp"]
    with pytest.warns(UnscoredConditionWarning, match="condition 'amp' is not scored: a scalar condition"):
        evaluate(model, {"default": None}, n=2, steps=1, seed=0, cache_dir=None, judge=LabelJudge())
    with pytest.raises(ConditionError, match="--conditions amp: eval cannot score it: a scalar condition"):
        scored_conditions(model.specs, LabelJudge(), ["amp"])
    with pytest.raises(ConditionError, match="--conditions emb: eval cannot score it: the judge scores only"):
        scored_conditions(model.specs, AmpJudge(), ["emb"])
    with pytest.raises(ConditionError, match="unknown condition 'colour'"):
        scored_conditions(model.specs, AmpJudge(), ["colour"])
    with pytest.raises(ConditionError, match="condition 'amp' is a scalar condition: requests for it come"):
        random_requests(model.specs, ["amp"], 2, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a judge that scores all it is asked for warns of nothing
        scored, unscored = scored_conditions(model.specs, AmpJudge(), ["c", "amp"])
    assert scored == ["c", "amp"] and unscored == {"emb": "the judge scores only ['amp', 'c']"}


def test_tables():
    rows = [{"guidance": "g", "expression": "cfg(c, 2)", "acc": 0.5, "fd": 12.345, "nfe": 4,
             "nfe_per_step": 2.0, "seconds": 1.25}]
    assert format_table(rows) == ("| guidance | acc | fd | NFE | NFE/step | seconds |\n"
                                  "|---|---|---|---|---|---|\n"
                                  "| g | 0.50 | 12.3 | 4 | 2.00 | 1.2 |\n")
    assert markdown_table(["a", "b"], [[1, "x"]]) == "| a | b |\n|---|---|\n| 1.00 | x |\n"
