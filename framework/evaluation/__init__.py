"""Evaluation: judging samples, drawing random requests, and the tables reports print.

Used by ``polyguide eval``, training's validation, the recipes' report scripts and the
benchmarks. It stands above the model API (:mod:`framework.model`) and below training and the CLI:

* :func:`random_requests` draws what to ask for: uniform labels for categorical conditions, and
  values from the judge's ``request`` hook for scalar, vector and sequence conditions;
* :func:`scored_conditions` says which conditions a judge scores, and why each other one is not;
* :func:`score_guidance` / :func:`evaluate` sample under each guidance and score with the judge;
* :func:`format_table` / :func:`markdown_table` turn rows into markdown.

A judge is whatever a modality's :meth:`~framework.core.plugins.Modality.judge` returns: see
:class:`~framework.evaluation.judge.Judge`.
"""

from framework.evaluation.judge import Judge, UnscoredConditionWarning, scored_conditions
from framework.evaluation.requests import random_requests
from framework.evaluation.scoring import evaluate, sample_checked, score_guidance
from framework.evaluation.tables import format_table, markdown_table

__all__ = ["Judge", "UnscoredConditionWarning", "evaluate", "format_table", "markdown_table",
           "random_requests", "sample_checked", "score_guidance", "scored_conditions"]
