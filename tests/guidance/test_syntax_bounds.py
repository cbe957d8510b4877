"""The parser bounds what it accepts, names the bound it refuses, and whatever it accepts is
explained (planned, step by step) quickly."""

from __future__ import annotations

import time

import pytest

from framework.cli.main import main
from framework.guidance import GuidanceSyntaxError, parse
from framework.guidance.syntax import MAX_BRANCHES, MAX_DEPTH, MAX_LENGTH, MAX_TERMS


def _terms(n: int) -> str:
    """``n`` distinct conditions under independent guidance (``n + 1`` branches)."""
    return "uncond" + "".join(f" + 0.5*(cond(c{i}) - uncond)" for i in range(n))


OVER = [
    ("length", "uncond" + " + 0*(cond(a) - uncond)" * 100, f"the limit is MAX_LENGTH={MAX_LENGTH}"),
    ("brackets", "uncond + " + "2*(" * (MAX_DEPTH + 1) + "cond(a) - uncond" + ")" * (MAX_DEPTH + 1),
     f"MAX_DEPTH={MAX_DEPTH}"),
    ("signs", "-" * (MAX_DEPTH + 1) + "cond(a)", f"MAX_DEPTH={MAX_DEPTH}"),
    ("calls", "adaptive(" * (MAX_DEPTH + 1) + "cfg(a, 2)" + ")" * (MAX_DEPTH + 1), f"MAX_DEPTH={MAX_DEPTH}"),
    ("methods", "cond(a)" + ".on(weak)" * MAX_DEPTH, f"the limit is MAX_DEPTH={MAX_DEPTH}"),
    ("branches", _terms(MAX_BRANCHES), f"uses {MAX_BRANCHES + 1} distinct branches (model evaluations per "
                                       f"step); the limit is MAX_BRANCHES={MAX_BRANCHES}"),
    ("terms", "independent([" + ",".join("a" * 300) + "], [" + ",".join("1" * 300) + "])",
     f"more than MAX_TERMS={MAX_TERMS} terms"),
]


@pytest.mark.fault("guidance size")
@pytest.mark.parametrize(("bound", "text", "message"), OVER, ids=[b for b, _, _ in OVER])
def test_over_the_bound_is_refused_naming_the_bound(bound, text, message):
    start = time.perf_counter()
    with pytest.raises(GuidanceSyntaxError) as info:
        parse(text)
    assert message in str(info.value)
    assert time.perf_counter() - start < 1.0
    # a long text is shown as a window around the caret, not whole
    assert all(len(line) < 200 for line in str(info.value).splitlines()[1:])


AT_THE_BOUND = {
    "64 branches": _terms(MAX_BRANCHES - 1),
    "long flat sum": "uncond" + " + 0*(cond(a) - uncond)" * 85,
    "deep calls": "adaptive(" * (MAX_DEPTH - 2) + "cfg(a, 2)" + ")" * (MAX_DEPTH - 2),
    "deep brackets": "uncond + " + "2*(" * (MAX_DEPTH - 4) + "cond(a) - uncond" + ")" * (MAX_DEPTH - 4),
    "nested windows": "adaptive(" * 8 + "cfg(t, 3)" + ".within(0.1, 0.9))" * 8,
    "long schedule": "uncond + " + "*".join(["linear(1, 2)"] * 140) + "*(cond(t) - uncond)",
    "many conditions": "nested([" + ",".join(f"c{i}" for i in range(60)) + "], [" + ",".join("1" * 60) + "])",
}


@pytest.mark.parametrize("text", AT_THE_BOUND.values(), ids=AT_THE_BOUND.keys())
def test_whatever_is_accepted_is_explained_quickly(text, capsys):
    assert len(text) <= MAX_LENGTH
    start = time.perf_counter()
    assert main(["explain", text, "--steps", "50"]) == 0
    assert time.perf_counter() - start < 3.0, "explain must answer quickly for anything accepted"
    out = capsys.readouterr().out
    assert out.splitlines()[-2].startswith("total NFE")
