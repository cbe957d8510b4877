"""Condition dropout: which condition subsets training drops to, per sample, and whether they
cover the subsets a guidance expression evaluates."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import torch

from framework.core.conditions import ConditionError, Conditions, ConditionSpec, unknown_error

__all__ = ["DropoutSpec", "GuidanceSubsets", "UntrainedSubsetWarning"]


class GuidanceSubsets(Protocol):
    """What dropout reads of a guidance expression (:class:`framework.guidance.expr.Expr` is one):
    the condition subsets its main-network branches keep."""

    def required_subsets(self) -> set[frozenset[str]]: ...


class UntrainedSubsetWarning(UserWarning):
    """Guidance asks for a condition subset that training never dropped to."""


class DropoutSpec:
    """Per-sample condition dropout with per-condition and joint probabilities.

    ``DropoutSpec({"text": 0.05, "image": 0.05, ("text", "image"): 0.05})`` drops, per
    sample: both together with probability 0.05 (tuple keys are mutually exclusive events),
    and on top each condition independently with its own probability. A condition not
    listed is never dropped.
    """

    def __init__(self, rates: Mapping[str | tuple[str, ...], float] | None = None) -> None:
        self.single: dict[str, float] = {}
        self.joint: dict[frozenset[str], float] = {}
        for key, p in (rates or {}).items():
            if not 0.0 <= float(p) <= 1.0:
                raise ConditionError(f"dropout probability for {key!r} must be in [0, 1], got {p}")
            if isinstance(key, str):
                self.single[key] = float(p)
            else:  # a tuple is one exclusive event, even of a single condition
                group = frozenset(key)
                self.joint[group] = self.joint.get(group, 0.0) + float(p)
        total = sum(self.joint.values())
        if total > 1.0 + 1e-9:
            raise ConditionError(f"joint dropout probabilities sum to {total:.3f} > 1")

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.single) | frozenset(n for j in self.joint for n in j)

    def __repr__(self) -> str:
        items = [f"{k!r}: {v:g}" for k, v in self.single.items()]
        items += [f"{tuple(sorted(k))!r}: {v:g}" for k, v in self.joint.items()]
        return f"DropoutSpec({{{', '.join(items)}}})"

    def validate(self, names: Iterable[str]) -> None:
        """Raise if the spec names a condition the model does not have."""
        names = set(names)
        for n in self.names:
            if n not in names:
                raise unknown_error("condition in DropoutSpec", n, names)

    def sample(self, names: Sequence[str], batch_size: int,
               generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Draw per-sample keep masks: name → bool ``[B]`` (``False`` = dropped)."""
        self.validate(names)
        drop = {n: torch.zeros(batch_size, dtype=torch.bool) for n in names}
        if self.joint:
            u = torch.rand(batch_size, generator=generator)
            lo = 0.0
            for group, p in self.joint.items():
                hit = (u >= lo) & (u < lo + p)
                for n in group:
                    drop[n] |= hit
                lo += p
        for n, p in self.single.items():
            drop[n] |= torch.rand(batch_size, generator=generator) < p
        return {n: ~d for n, d in drop.items()}

    def apply(self, conditions: Conditions, generator: torch.Generator | None = None) -> Conditions:
        """A copy of ``conditions`` with dropped samples marked absent."""
        keep = self.sample(conditions.names, conditions.batch_size, generator)
        present = {n: conditions.present[n] & keep[n].to(conditions.present[n].device)
                   for n in conditions.names}
        return Conditions(dict(conditions.values), present, dict(conditions.cads),
                          conditions.generator)

    def record(self) -> dict[str, dict[str, float]]:
        """Plain data for checkpoints and ``hparams.yaml``: ``{"exclusive": {"a+b": p, ...},
        "independent": {"a": p, ...}}`` (an exclusive event drops its conditions together)."""
        return {"exclusive": {"+".join(sorted(g)): p for g, p in self.joint.items()},
                "independent": dict(self.single)}

    @staticmethod
    def table(record: Mapping[str, Mapping[str, float]]) -> str:
        """A :meth:`record` as a text table: what each drop event drops, with its probability per
        sample."""
        rows = [(k.replace("+", ", "), p, "exclusive event") for k, p in record.get("exclusive", {}).items()]
        rows += [(k, p, "independently") for k, p in record.get("independent", {}).items()]
        if not rows:
            return "condition dropout: none (every sample keeps all its conditions)"
        keep = 1.0 - sum(record.get("exclusive", {}).values())
        width = max(len("drops"), *(len(r[0]) for r in rows))
        lines = ["condition dropout trained, per sample:", f"  {'drops':<{width}}  probability",
                 *(f"  {d:<{width}}  {p:<11.4g}  {how}" for d, p, how in rows)]
        if record.get("exclusive"):
            rest = "then the independent drops" if record.get("independent") else "keeps every condition"
            lines.append(f"  {'(no event)':<{width}}  {keep:<11.4g}  {rest}")
        return "\n".join(lines)

    def trains(self, absent: Iterable[str], names: Iterable[str]) -> bool:
        """Whether exactly the conditions ``absent`` (of ``names``) are dropped with probability > 0."""
        absent, names = frozenset(absent), frozenset(names)
        if not absent:
            return all(self.single.get(n, 0.0) < 1.0 for n in names) and \
                sum(self.joint.values()) < 1.0
        events = [(g, p) for g, p in self.joint.items() if p > 0]
        if sum(self.joint.values()) < 1.0:
            events.append((frozenset(), 1.0))
        for group, _ in events:
            if not group <= absent:
                continue
            rest_ok = all(self.single.get(n, 0.0) > 0 for n in absent - group)
            kept_ok = all(self.single.get(n, 0.0) < 1.0 for n in names - absent)
            if rest_ok and kept_ok:
                return True
        return False

    def check(self, expr: GuidanceSubsets, specs: Mapping[str, ConditionSpec] | Iterable[str],
              strict: bool = False) -> list[frozenset[str]]:
        """Check that training covers every subset ``expr`` evaluates on the main network.

        Returns the untrained subsets (non-null condition names). Warns with
        :class:`UntrainedSubsetWarning` naming each, or raises :class:`ConditionError`
        when ``strict``. Conditions with a ``mask`` null need no dropout.
        """
        specs_map = specs if isinstance(specs, Mapping) else {n: None for n in specs}
        names = frozenset(specs_map)
        trainable = frozenset(n for n, s in specs_map.items() if s is None or s.needs_dropout)
        missing = []
        for subset in sorted(expr.required_subsets(), key=lambda s: (len(s), sorted(s))):
            unknown = subset - names
            if unknown:
                raise unknown_error("condition", sorted(unknown)[0], names)
            absent = (names - subset) & trainable
            if not self.trains(absent, trainable):
                missing.append(subset)
        if missing:
            desc = "; ".join(_subset_str(s, names) for s in missing)
            msg = (f"guidance {expr!r} evaluates condition subsets the model was never trained "
                   f"on: {desc}. Training dropout was {self!r}.")
            if strict:
                raise ConditionError(msg)
            warnings.warn(msg, UntrainedSubsetWarning, stacklevel=2)
        return missing

    @classmethod
    def for_guidance(cls, exprs: GuidanceSubsets | Sequence[GuidanceSubsets],
                     specs: Mapping[str, ConditionSpec] | Iterable[str], rate: float = 0.1) -> DropoutSpec:
        """A dropout spec that trains exactly the subsets the given guidance evaluates.

        Every required absent-pattern gets an equal share of ``rate`` as a joint rule, so the
        model sees each null pattern the sampler will ask for (e.g. nested guidance's
        ``(c1, ∅)``) and nothing else is spent on patterns no expression uses.
        """
        exprs = [exprs] if not isinstance(exprs, Sequence) else list(exprs)
        specs_map = specs if isinstance(specs, Mapping) else {n: None for n in specs}
        trainable = frozenset(n for n, s in specs_map.items() if s is None or s.needs_dropout)
        patterns = set()
        for e in exprs:
            for subset in e.required_subsets():
                absent = trainable - subset
                if absent:
                    patterns.add(frozenset(absent))
        if not patterns:
            return cls({})
        share = rate / len(patterns)
        # exclusive (tuple) events only, so the total drop rate is exactly `rate`
        return cls({tuple(sorted(p)): share
                    for p in sorted(patterns, key=lambda s: (len(s), sorted(s)))})


def _subset_str(subset: frozenset[str], names: frozenset[str]) -> str:
    kept = ", ".join(sorted(subset)) or "∅"
    dropped = ", ".join(sorted(names - subset)) or "nothing"
    return f"{{{kept}}} (dropping {dropped})"
