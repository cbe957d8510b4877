"""aMUSEd (masked VQ tokens) through our algebra: the pipeline's tokens and images exactly."""

import diffusers
import torch

from framework import pretrained
from framework.guidance import presets as G

STEPS = 4


def _theirs(folder, output_type, **kwargs):
    pipe = diffusers.AmusedPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe(num_inference_steps=STEPS, output_type=output_type, **kwargs).images


def test_cfg_equals_the_pipeline(amused):
    ours = pretrained.load(str(amused))
    out = ours.sample({"text": "a red cube"}, "cfg(text, 10)", n=2, steps=STEPS, seed=0)
    kw = dict(prompt="a red cube", guidance_scale=10.0, num_images_per_prompt=2)
    tokens = _theirs(amused, "latent", generator=torch.Generator().manual_seed(0), **kw)
    images = _theirs(amused, "pt", generator=torch.Generator().manual_seed(0), **kw)
    assert out.samples.shape == tokens.shape == (2, 8, 8)
    assert torch.equal(out.samples, tokens)
    assert (out.media - images).abs().max() <= 1e-4
    other = ours.sample({"text": "a red cube"}, "cfg(text, 2)", n=2, steps=STEPS, seed=0)
    assert not torch.equal(other.samples, tokens)


def test_negative_prompt_and_interval(amused):
    ours = pretrained.load(str(amused))
    tokens = _theirs(amused, "latent", prompt="a red cube", negative_prompt="blue ball", guidance_scale=10.0,
                     generator=torch.Generator().manual_seed(1))
    out = ours.sample({"text": "a red cube", "negative_text": "blue ball"},
                      "cond(negative_text) + 10*(cond(text) - cond(negative_text))", n=1, steps=STEPS, seed=1)
    assert torch.equal(out.samples, tokens)
    window = ours.sample({"text": "a red cube"}, G.interval("text", 10.0, 0.3, 0.7), n=1, steps=STEPS, seed=1)
    assert window.branches_per_step == [1, 2, 2, 1]
