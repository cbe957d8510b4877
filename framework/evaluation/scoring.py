"""Sample under a guidance and score the samples with the modality's judge."""

from __future__ import annotations

import time
import warnings
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch

from framework.core.conditions import Conditions
from framework.core.errors import NonFiniteError, one_line
from framework.evaluation.judge import UnscoredConditionWarning, scored_conditions
from framework.evaluation.requests import random_requests

__all__ = ["evaluate", "sample_checked", "score_guidance"]


def sample_checked(model, conditions, guidance, **kwargs):
    """``model.sample(conditions, guidance, **kwargs)`` whose non-finite result is a one-line
    :class:`~framework.core.errors.NonFiniteError` (nothing is written): the guided prediction
    (checked every step) or the decoded media ``[B, *media_shape]``."""
    try:
        out = model.sample(conditions, guidance, **kwargs)
    except FloatingPointError as e:
        raise NonFiniteError(f"sampling produced non-finite values; nothing was written. {one_line(e)}. "
                             f"A smaller guidance weight usually helps") from e
    for what, t in (("samples", out.samples), ("decoded media", out.media)):
        if t is not None and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise NonFiniteError(f"sampling produced non-finite {what} "
                                 f"({int((~torch.isfinite(t)).sum())} values); nothing was written")
    return out


def score_guidance(model, judge, conditions: Conditions, requested: Mapping[str, Any], label: str,
                   guidance: str | None, steps: int, seed: int, weak=None, progress: bool = False):
    """Sample a :class:`~framework.core.conditions.Conditions` batch of ``B`` under one guidance and
    score the media with ``judge`` against ``requested`` (``[B]`` label ids, or the values the
    judge's ``request`` hook drew, per condition).

    Returns ``(row, output)``: the row holds the judge's metrics, NFE, NFE per step and the
    sampling seconds; the :class:`~framework.generators.SampleOutput` is for pictures.
    """
    start = time.perf_counter()
    out = sample_checked(model, conditions, guidance, steps=steps, seed=seed, weak=weak, progress=progress)
    seconds = time.perf_counter() - start
    media = out.media if out.media is not None else out.samples
    text = guidance if guidance is None or isinstance(guidance, str) else repr(guidance)
    row = {"guidance": label, "expression": text, **judge.evaluate(media.cpu(), requested),
           "nfe": out.nfe, "nfe_per_step": out.nfe / len(out.stats), "seconds": seconds}
    return row, out


def evaluate(model, guidances: Mapping[str, Any], n: int, steps: int, seed: int, cache_dir: Path,
             names: Collection[str] | None = None, progress: bool = False, judge: Any = None
             ) -> list[dict[str, Any]]:
    """Sample ``n`` random requests per guidance and score them with the modality's judge.

    ``guidances``: label → guidance text, a parsed expression (whose row's ``expression`` is then
    the label: give the text as label) or ``None`` (the model's default guidance).

    ``names``: the conditions to request (default: every one the judge scores,
    :func:`~framework.evaluation.judge.scored_conditions`; each other one is named in an
    :class:`UnscoredConditionWarning`). ``judge``: default the model's modality's, cached in
    ``cache_dir``. Returns one row per guidance (:func:`score_guidance`).
    """
    if judge is None:
        modality = model.plugin
        judge = modality.judge(model.specs, model.codec, cache_dir)
    scored, unscored = scored_conditions(model.specs, judge, names)
    if names is None:
        for name, why in unscored.items():
            warnings.warn(f"condition {name!r} is not scored: {why}", UnscoredConditionWarning, stacklevel=2)
    requested = random_requests(model.specs, scored, n, seed, judge)
    conds = Conditions.from_raw(model.specs, dict(requested), n)
    rows = []
    for label, g in guidances.items():
        row = score_guidance(model, judge, conds, requested, label, g, steps, seed, progress=progress)[0]
        rows.append(row if g is None or isinstance(g, str) else {**row, "expression": label})
    return rows
