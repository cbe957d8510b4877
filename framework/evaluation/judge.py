"""What a judge is, and which of a model's conditions it scores.

A modality's :meth:`~framework.core.plugins.Modality.judge` returns an object with
``evaluate(media, requested) -> {metric: value}``. Categorical conditions need nothing more: eval
draws uniform labels. A judge scores a scalar, vector or sequence condition by drawing the values
to request itself, through the ``request(name, n, generator)`` hook (e.g. frequencies within the
range its pitch tracker measures). A judge may also list the conditions it scores in
``conditions``; without it, it scores every categorical condition, and every other one its
``request`` hook answers. A condition eval does not score is always said, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Protocol, runtime_checkable

import torch

from framework.core.conditions import ConditionSpec

__all__ = ["Judge", "UnscoredConditionWarning", "scored_conditions"]


class UnscoredConditionWarning(UserWarning):
    """A condition of the model that eval does not score (the message says why)."""


@runtime_checkable
class Judge(Protocol):
    """Scores samples against what was requested.

    ``evaluate(media [B, *media_shape], requested)`` → ``{metric: value}``, where ``requested``
    maps each scored condition to its ``[B]`` label ids (categorical) or to the values the judge's
    ``request`` hook drew (``[B]`` float for a scalar, ``[B, dim]`` / ``[B, L, dim]`` or ``B``
    raw values for vector and sequence conditions).

    Optional members (looked up with ``getattr``):

    * ``conditions``: the condition names it scores (default: see :func:`scored_conditions`);
    * ``request(name, n, generator) -> values``: ``n`` values of the non-categorical condition
      ``name`` to ask for, drawn from ``generator`` (values :meth:`ConditionSpec.encode` takes);
      ``None`` when it cannot score ``name``.
    """

    def evaluate(self, media: torch.Tensor, requested: Mapping[str, Any]) -> dict[str, float]: ...


def _declared(judge: Any) -> Collection[str] | None:
    names = getattr(judge, "conditions", None)
    return None if names is None or (isinstance(names, Mapping) and not names) else names


def scored_conditions(specs: Mapping[str, ConditionSpec], judge: Any,
                      names: Collection[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """Which conditions of ``specs`` eval scores with ``judge``: ``(scored, unscored)``, where
    ``unscored`` maps each other condition to the reason (one phrase).

    With ``names`` (``--conditions``) only those are asked for; one the judge cannot score is then
    a :class:`~framework.core.conditions.ConditionError` giving the reason.
    """
    from framework.core.conditions import ConditionError

    declared = _declared(judge)
    hook = callable(getattr(judge, "request", None))
    scored, unscored = [], {}
    for name, spec in specs.items():
        if declared is not None and name not in declared:
            unscored[name] = f"the judge scores only {sorted(declared)}"
        elif spec.kind == "categorical" or hook:
            scored.append(name)
        else:
            unscored[name] = (f"a {spec.kind} condition, and the judge has no request(name, n, generator) "
                              f"hook to draw values of it")
    if names is None:
        return scored, unscored
    for name in names:
        if name not in specs:
            raise ConditionError(f"unknown condition {name!r}; this model has {sorted(specs)}")
        if name in unscored:
            raise ConditionError(f"--conditions {name}: eval cannot score it: {unscored[name]}; "
                                 f"scored: {scored or 'none'}")
    return [n for n in scored if n in names], {**unscored, **{n: "not asked for (--conditions)"
                                                             for n in scored if n not in names}}
