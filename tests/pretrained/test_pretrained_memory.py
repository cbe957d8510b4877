"""Memory: sampling a pipeline through the guidance engine holds no more than the pipeline's own
call, beyond the condition rows the engine packs per branch (one ``[branches × n, ...]`` copy of
each condition's value); both sides evaluate the same two CFG branches in one batched call, so
there are no extra branch rows. Peaks are measured by :mod:`framework.pretrained.memory` (the
CPU has no allocator counter), which the first test checks on tensors of known size."""

from __future__ import annotations

import pytest
import torch

from framework import pretrained
from framework.pretrained.memory import peak_bytes

CPU = torch.device("cpu")
PROMPT = "happy piano"


def test_peak_bytes_counts_what_a_call_holds_at_once():
    def call():
        a = torch.ones(1024)  # 4 KiB
        b = torch.ones(2048)  # 8 KiB, while a lives: 12 KiB
        del a
        c = torch.ones(2048)  # 16 KiB with b
        return (b.view(2, 1024) + c.view(2, 1024)).sum()  # + 8 KiB for b + c, + 4 bytes for its sum

    assert peak_bytes(call, CPU) == 24 * 1024 + 4
    weights = torch.ones(4096)
    assert peak_bytes(lambda: weights.view(64, 64).t(), CPU) == 0  # a view of what existed: nothing new


def _packed_condition_bytes(model, raw: dict, n: int, branches: int) -> int:
    """The engine's packed condition batch: every branch's rows of each condition's value and
    presence mask, plus the mask each branch makes for a condition it keeps or nulls."""
    conditions = model.conditions(raw, n)
    values = sum(v.numel() * v.element_size() for v in conditions.values.values())
    masks = sum(m.numel() * m.element_size() for m in conditions.present.values())
    return branches * (values + 2 * masks)


@pytest.mark.parametrize("fixture", ["musicgen"])  # the image pipelines: benchmarks/pretrained_overhead.py
def test_cfg_holds_no_more_than_the_pipeline_beyond_its_packed_condition_rows(fixture, request):
    import diffusers
    import transformers

    folder = str(request.getfixturevalue(fixture))
    model = pretrained.load(folder)
    n, steps = 2, 2
    if fixture == "musicgen":
        lib = transformers.MusicgenForConditionalGeneration.from_pretrained(folder)
        tok = transformers.AutoTokenizer.from_pretrained(folder)
        enc = tok([PROMPT] * n, padding=True, return_tensors="pt")
        K = lib.decoder.config.num_codebooks

        def theirs():
            return lib.generate(**enc, guidance_scale=3.0, max_new_tokens=steps + K - 1)
    else:
        lib = diffusers.DiffusionPipeline.from_pretrained(folder)
        lib.set_progress_bar_config(disable=True)

        def theirs():
            return lib(PROMPT, num_images_per_prompt=n, num_inference_steps=steps, guidance_scale=3.0,
                       generator=torch.Generator().manual_seed(0), output_type="pt").images

    def ours():
        return model.sample({"text": PROMPT}, "cfg(text, 3)", n=n, steps=steps, seed=0).media

    with torch.inference_mode():
        ours(), theirs()  # warm: lazily built buffers are not part of either call
        mine, pipeline = peak_bytes(ours, CPU), peak_bytes(theirs, CPU)
    allowance = _packed_condition_bytes(model, {"text": PROMPT}, n, branches=2)
    assert pipeline > 0 and mine <= pipeline + allowance, (mine, pipeline, allowance)
