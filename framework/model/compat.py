"""Whether two models can be combined in one guidance (a ``weak`` model for ``.on("weak")``
branches, autoguidance): the same family, prediction space, noise schedule, vocabulary, sample
shape, conditions and representation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from framework.core.errors import CheckpointError

__all__ = ["check_compatible"]


def _describe_conditions(specs: Mapping[str, Any]) -> str:
    return ", ".join(f"{n}[{'|'.join(s.labels)}]" if s.labels else f"{n}({s.kind}, dim {s.dim})"
                     for n, s in specs.items()) or "none"


def _signature(model: Any) -> dict[str, Any]:
    """What two networks must share for their predictions to be combined in one guidance."""
    fam, hp = model.family, model.hparams
    return {"family": hp.get("family"), "prediction space": getattr(fam, "native_space", None),
            "noise schedule": getattr(fam, "config", None), "vocabulary": getattr(fam, "vocab_size", None),
            "codebooks": getattr(fam, "codebooks", None), "sample shape": list(model.shape),
            "conditions": _describe_conditions(model.specs), "modality": hp.get("modality"),
            "representation": dict(hp.get("representation") or {})}


def check_compatible(main: Any, weak: Any, main_name: str = "the main model",
                     weak_name: str = "the weak model") -> None:
    """Raise :class:`CheckpointError` unless ``weak`` can serve ``.on("weak")`` branches of ``main``:
    same family, prediction space, noise schedule, vocabulary, sample shape, conditions and
    representation (its size and training may differ). The message names both and the first
    difference."""
    a, b = _signature(main), _signature(weak)
    for key in a:
        if a[key] != b[key]:
            raise CheckpointError(f"weak model {weak_name} does not fit {main_name}: {key} {b[key]} "
                                  f"instead of {a[key]}")
