"""SD3 (flow matching) through our algebra: the pipeline's own output, and APG / CFG-Zero* /
interval checked against diffusers' guiders driving the same transformer and scheduler."""

import diffusers
import pytest
import torch
from diffusers.guiders import AdaptiveProjectedGuidance, ClassifierFreeZeroStarGuidance
from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer
from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import retrieve_timesteps

from framework import pretrained
from framework.guidance import presets as G

STEPS = 4


def _pipe(folder):
    pipe = diffusers.StableDiffusion3Pipeline.from_pretrained(folder, text_encoder_3=None, tokenizer_3=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_cfg_and_negative_prompt_equal_the_pipeline(sd3):
    ours = pretrained.load(str(sd3))
    pipe = _pipe(sd3)
    theirs = pipe("a red cube", num_inference_steps=STEPS, guidance_scale=5.0, num_images_per_prompt=2,
                  generator=torch.Generator().manual_seed(0), output_type="pt").images
    out = ours.sample({"text": "a red cube"}, "cfg(text, 5)", n=2, steps=STEPS, seed=0)
    assert (out.media - theirs).abs().max() <= 1e-4
    assert out.nfe == 2 * STEPS
    theirs = pipe("a red cube", negative_prompt="blue ball", num_inference_steps=STEPS, guidance_scale=5.0,
                  generator=torch.Generator().manual_seed(1), output_type="pt").images
    out = ours.sample({"text": "a red cube", "negative_text": "blue ball"},
                      "cond(negative_text) + 5*(cond(text) - cond(negative_text))", n=1, steps=STEPS, seed=1)
    assert (out.media - theirs).abs().max() <= 1e-4
    plain = ours.sample({"text": "a red cube"}, "cfg(text, 5)", n=1, steps=STEPS, seed=1)
    assert (plain.media - theirs).abs().max() > 1e-3


def _loop(pipe, combine, seed):
    """The pipeline's loop written out, with ``combine(i, v_cond, v_uncond)`` as the guidance."""
    embeds, neg, pooled, neg_pooled = pipe.encode_prompt("a red cube", None, None, pipe.device, 1, True,
                                                         negative_prompt="")
    gen = torch.Generator().manual_seed(seed)
    latents = pipe.prepare_latents(1, 4, 16, 16, embeds.dtype, pipe.device, gen)
    timesteps, _ = retrieve_timesteps(pipe.scheduler, STEPS, pipe.device)
    for i, t in enumerate(timesteps):
        with torch.no_grad():
            v = pipe.transformer(hidden_states=torch.cat([latents] * 2), timestep=t.expand(2),
                                 encoder_hidden_states=torch.cat([neg, embeds]),
                                 pooled_projections=torch.cat([neg_pooled, pooled]), return_dict=False)[0]
        uncond, cond = v.chunk(2)
        latents = pipe.scheduler.step(combine(i, t, cond, uncond), t, latents, return_dict=False)[0]
    return latents


def _diffusers_guider(guider):
    def combine(i, t, cond, uncond):
        guider.set_state(i, STEPS, t)
        if i == 0 and isinstance(guider, AdaptiveProjectedGuidance):
            guider.momentum_buffer = MomentumBuffer(guider.adaptive_projected_guidance_momentum)
        return guider.forward(cond, uncond).pred
    return combine


@pytest.mark.parametrize("case", ["cfg_zero_star", "apg", "interval"])
def test_guidance_beyond_the_pipeline(sd3, case):
    ours = pretrained.load(str(sd3))
    if case == "cfg_zero_star":
        expr = G.cfg_zero_star("text", 5.0, zero_init_steps=1)
        combine = _diffusers_guider(ClassifierFreeZeroStarGuidance(guidance_scale=5.0, zero_init_steps=1))
    elif case == "apg":
        expr = G.apg("text", 6.0, eta=0.0, momentum=-0.5, norm_threshold=2.0, space="flow_v")
        combine = _diffusers_guider(AdaptiveProjectedGuidance(
            guidance_scale=5.0, use_original_formulation=True, eta=0.0,
            adaptive_projected_guidance_momentum=-0.5, adaptive_projected_guidance_rescale=2.0))
    else:  # guidance only for 0.3 ≤ τ ≤ 0.7 (steps 1 and 2 of 4), the conditional prediction elsewhere
        expr = G.interval("text", 5.0, 0.3, 0.7)

        def combine(i, t, cond, uncond):
            return uncond + 5.0 * (cond - uncond) if i in (1, 2) else cond
    out = ours.sample({"text": "a red cube"}, expr, n=1, steps=STEPS, seed=2, decode=False)
    want = _loop(_pipe(sd3), combine, seed=2)
    torch.testing.assert_close(out.samples, want, rtol=1e-4, atol=1e-5)
    plain = ours.sample({"text": "a red cube"}, "cfg(text, 5)", n=1, steps=STEPS, seed=2, decode=False)
    assert (plain.samples - want).abs().max() > 1e-3
    if case == "interval":
        assert out.branches_per_step == [1, 2, 2, 1]
    if case == "cfg_zero_star":
        assert out.branches_per_step[0] == 0  # zero-init: the first step evaluates nothing
