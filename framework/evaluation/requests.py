"""Random requests: what eval and validation ask a model to generate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from framework.core.conditions import ConditionError, ConditionSpec

__all__ = ["random_requests"]


def random_requests(specs: Mapping[str, ConditionSpec], names: Sequence[str], n: int, seed: int,
                    judge: Any = None) -> dict[str, Any]:
    """``n`` requests for each condition in ``names``, from a generator seeded with ``seed`` (the
    same requests for the same seed).

    Categorical conditions get uniformly drawn label indices ``[n]``; the others get the values the
    judge's ``request(name, n, generator)`` hook draws (see :mod:`framework.evaluation.judge`). A
    non-categorical condition without such a hook is a :class:`ConditionError` naming it.
    """
    g = torch.Generator().manual_seed(seed)
    out: dict[str, Any] = {}
    for k in names:
        spec = specs[k]
        if spec.kind == "categorical":
            out[k] = torch.randint(len(spec.labels), (n,), generator=g)
            continue
        hook = getattr(judge, "request", None)
        values = hook(k, n, g) if callable(hook) else None
        if values is None:
            who = "there is no judge" if judge is None else f"{type(judge).__name__} draws none"
            raise ConditionError(f"condition {k!r} is a {spec.kind} condition: requests for it come from "
                                 f"the judge's request(name, n, generator) hook, and {who}")
        if len(values) != n:
            raise ConditionError(f"{type(judge).__name__}.request({k!r}, {n}) gave {len(values)} values")
        out[k] = values
    return out
