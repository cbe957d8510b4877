"""Markdown tables of evaluation rows."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["format_table", "markdown_table", "number"]


def number(v: Any) -> str:
    """A metric as the tables print it: one decimal from 10 up, two below; ``None`` (not measured)
    as "–"; text as it is."""
    if v is None:
        return "–"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
                   fmt: Callable[[Any], str] = number) -> str:
    """``header`` and ``rows`` (cells formatted with ``fmt``) → a markdown table, newline-ended."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table of :func:`~framework.evaluation.scoring.evaluate` rows: the guidance, the
    judge's metrics (whatever the modality reports), NFE, NFE per step and seconds."""
    fixed = {"guidance", "expression", "nfe", "nfe_per_step", "seconds"}
    metrics = [k for k in rows[0] if k not in fixed]
    body = [[r["guidance"], *(number(r[m]) for m in metrics), str(r["nfe"]), f"{r['nfe_per_step']:.2f}",
             f"{r['seconds']:.1f}"] for r in rows]
    return markdown_table(["guidance", *metrics, "NFE", "NFE/step", "seconds"], body, fmt=str)
