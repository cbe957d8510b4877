"""A pipeline's prompt rows are assembled once per sampling run, not once per step: the guidance
engine hands the network the same packed condition batch while the branch layout holds, and the
wrappers keep what they derived from it (part of the overhead benchmarks/pretrained_overhead.py
measures). A later run with other prompts gets its own rows (nothing stale)."""

from __future__ import annotations

import pytest
import torch

from framework import pretrained
from framework.pretrained import musicgen as mg
from framework.pretrained import stable_diffusion as sd


def _counting(monkeypatch, module) -> list[int]:
    calls: list[int] = []
    real = module.prompt_rows

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "prompt_rows", counted)
    return calls


@pytest.mark.parametrize(("fixture", "module", "steps", "calls_per_run"), [
    ("musicgen", mg, 2, 5),  # 2 frames + 3 steps of the delay pattern: 5 decoder calls
    ("sd_eps", sd, 3, 3)])
def test_prompt_rows_once_per_run(fixture, module, steps, calls_per_run, request, monkeypatch):
    folder = str(request.getfixturevalue(fixture))
    calls = _counting(monkeypatch, module)
    model = pretrained.load(folder)
    guidance = "cond(negative_text) + 3*(cond(text) - cond(negative_text))"  # 2 branches, every step
    first = model.sample({"text": "happy piano", "negative_text": "sad"}, guidance, n=1, steps=steps, seed=0)
    assert len(first.stats) == calls_per_run and len(calls) == 1
    second = model.sample({"text": "sad drums loud", "negative_text": "sad"}, guidance, n=1, steps=steps,
                          seed=0)
    assert len(calls) == 2
    assert "_last_rows" not in model.__dict__  # a run's rows are released when it ends
    fresh = model.sample({"text": "sad drums loud", "negative_text": "sad"}, guidance, n=1, steps=steps,
                         seed=0)
    assert len(calls) == 3
    assert torch.equal(second.samples, fresh.samples) and not torch.equal(second.samples, first.samples)
