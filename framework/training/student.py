"""The distilled student's definition and what it learns, without Lightning.

:func:`student_hparams` makes the student's constructor arguments from a teacher (its conditions
gain the scalar guidance weight); :func:`teacher_guider` evaluates a guidance expression on the
teacher's network over whole inputs; :func:`discrete_kl` is the loss of the discrete families.
:class:`~framework.training.distill.GuidanceDistillation` trains with them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import torch

from framework.generators import Autoregressive, Masked
from framework.guidance import Guider
from framework.guidance.branches import KEEP
from framework.guidance.expr import Expr
from framework.guidance.syntax import parse
from framework.model.checkpoints import CheckpointError

if TYPE_CHECKING:
    from framework.training.module import GenerativeModule

__all__ = ["discrete_kl", "family_at", "student_hparams", "teacher_guider"]

_PLACEHOLDER = re.compile(r"\{w\}")


def family_at(template: str, w: float) -> Expr:
    """The family's expression at weight ``w`` (``{w}`` replaced by the number)."""
    return parse(_PLACEHOLDER.sub(repr(float(w)), template))


def student_hparams(teacher: GenerativeModule, template: str, condition: str = "w",
                    plain_rate: float = 0.2, sample_w: float = 3.0,
                    where: str = "the teacher") -> tuple[dict[str, Any], frozenset[str]]:
    """The student's constructor arguments and the teacher conditions the family keeps.

    The student is the teacher's model with one more condition, the scalar ``condition``. Its
    dropout records what distillation trains (joint events; the teacher's single-condition rates
    are kept as they are): with probability ``plain_rate`` the teacher's own dropout with ``w``
    absent, otherwise ``w`` present with the conditions the family does not keep absent. Its
    default guidance is ``cond(<kept>, w=sample_w)``.

    Raises:
        CheckpointError: naming ``where`` when the teacher cannot take this family (a condition
            already named ``condition``, a family naming conditions the teacher lacks).
    """
    if not _PLACEHOLDER.search(template):
        raise ValueError(f"the guidance family {template!r} has no {{w}} placeholder for the weight, "
                         f"e.g. 'cfg((shape, color), {{w}})'")
    if not 0.0 <= plain_rate < 1.0:
        raise ValueError(f"plain_rate must be in [0, 1), got {plain_rate}")
    if condition in teacher.specs:
        raise CheckpointError(f"{where}: already has a condition named {condition!r}; name the weight "
                              f"condition otherwise (condition: ...)")
    expr = family_at(template, 2.0)
    for b in expr.branches():
        if b.network != "main":
            raise ValueError(f"the guidance family {template!r} uses network {b.network!r}; "
                             f"distillation evaluates the teacher alone")
        unknown = sorted(b.names - set(teacher.specs))
        if unknown:
            raise CheckpointError(f"{where}: has no condition {unknown[0]!r} that the guidance family "
                                  f"{template!r} uses; its conditions: {sorted(teacher.specs)}")
    kept = frozenset(n for b in expr.branches() for n, v in b.conds if v is KEEP)
    if not kept:
        raise ValueError(f"the guidance family {template!r} keeps no condition of the sample "
                         f"(cond(...)), so the student would learn one fixed prediction")
    hp = {k: v for k, v in dict(teacher.hparams).items() if k != "_instantiator"}
    hp["conditions"] = [*hp.get("conditions", ()), {"name": condition, "kind": "scalar"}]
    absent = sorted(set(teacher.specs) - kept)
    # what the student trains, as dropout events (used by the untrained-subset check at sampling):
    # plain rows drop w and follow the teacher's events; guided rows drop what the family ignores
    rates = dict(teacher.dropout.single)
    for group, p in teacher.dropout.joint.items():
        rates["+".join(sorted(group | {condition}))] = plain_rate * p
    rates[condition] = plain_rate
    if absent:
        key = "+".join(absent) if len(absent) > 1 else f"{absent[0]}+{absent[0]}"
        rates[key] = rates.get(key, 0.0) + (1.0 - plain_rate)
    hp["dropout"] = rates
    hp["guidance"] = [f"cond({', '.join(sorted(kept))}, {condition}={float(sample_w):g})"]
    hp["val_guidance"] = None
    return hp, kept


def teacher_guider(teacher: GenerativeModule, expr: Expr) -> Guider:
    """The engine evaluating ``expr`` on the teacher's network over whole inputs (no KV caches:
    an autoregressive teacher scores every position of a teacher-forced sequence at once). Its
    output space is the student's: the network's own for continuous families, normalisable
    log-probabilities for discrete ones."""
    fam = teacher.family
    discrete = isinstance(fam, (Masked, Autoregressive))
    return Guider(expr, teacher.backbone, native_space=fam.native_space, converter=fam.converter,
                  specs=teacher.specs, output_space=fam.output_space if discrete else fam.native_space)


def discrete_kl(target_logp: torch.Tensor, logits: torch.Tensor, counts: torch.Tensor | None = None
                ) -> torch.Tensor:
    """Mean ``KL(p ‖ q)`` per scored position.

    Args:
        target_logp: normalised log-probabilities ``[B, ..., V]`` of the target ``p`` (``-inf`` for
            excluded tokens: they contribute nothing).
        logits: the student's logits ``[B, ..., V]``.
        counts: bool ``[B, ...]``: positions that count (``None``: all).
    """
    logq = torch.log_softmax(logits.float(), dim=-1)
    p = target_logp.float().exp()
    terms = torch.where(p > 0, p * (target_logp.float() - logq), torch.zeros_like(logq))
    kl = terms.sum(-1)
    if counts is None:
        return kl.mean()
    counts = counts.to(kl.dtype)
    return (kl * counts).sum() / counts.sum().clamp_min(1.0)
