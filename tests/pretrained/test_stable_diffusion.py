"""Stable Diffusion / InstructPix2Pix through our guidance algebra equal the pipelines' own output."""

import diffusers
import pytest
import torch

from framework import pretrained
from framework.pretrained import PretrainedError

STEPS = 3


def _pipe(folder, cls="StableDiffusionPipeline"):
    pipe = getattr(diffusers, cls).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _theirs(pipe, seed, **kwargs):
    return pipe(num_inference_steps=STEPS, generator=torch.Generator().manual_seed(seed), output_type="pt",
                **kwargs).images


@pytest.mark.parametrize("folder", ["sd_eps", "sd_v"])
def test_cfg_equals_the_pipeline(folder, request):
    path = request.getfixturevalue(folder)
    ours = pretrained.load(str(path))
    assert ours.family.native_space == ("eps" if folder == "sd_eps" else "v")
    theirs = _theirs(_pipe(path), 0, prompt="a red cube", guidance_scale=7.5, num_images_per_prompt=2)
    out = ours.sample({"text": "a red cube"}, "cfg(text, 7.5)", n=2, steps=STEPS, seed=0)
    assert out.media.shape == theirs.shape == (2, 3, 16, 16)
    assert (out.media - theirs).abs().max() <= 1e-4
    assert out.nfe == 2 * STEPS  # both branches, each step (one batched UNet call)
    other = ours.sample({"text": "a red cube"}, "cfg(text, 3)", n=2, steps=STEPS, seed=0)
    assert (other.media - theirs).abs().max() > 1e-3  # the comparison can tell weights apart


def test_negative_prompt_equals_the_pipeline(sd_eps):
    ours = pretrained.load(str(sd_eps))
    theirs = _theirs(_pipe(sd_eps), 1, prompt="a red cube", negative_prompt="blue ball", guidance_scale=4.0)
    out = ours.sample({"text": "a red cube", "negative_text": "blue ball"},
                      "cond(negative_text) + 4*(cond(text) - cond(negative_text))", n=1, steps=STEPS, seed=1)
    assert (out.media - theirs).abs().max() <= 1e-4
    plain = ours.sample({"text": "a red cube"}, "cfg(text, 4)", n=1, steps=STEPS, seed=1)
    assert (plain.media - theirs).abs().max() > 1e-3


def test_instruct_pix2pix_scales_are_nested_guidance(pix2pix):
    ours = pretrained.load(str(pix2pix))
    img = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    theirs = _theirs(_pipe(pix2pix, "StableDiffusionInstructPix2PixPipeline"), 0, prompt="make it snow",
                     image=img, guidance_scale=7.5, image_guidance_scale=1.5)
    out = ours.sample({"text": "make it snow", "image": img}, "nested([image, text], [1.5, 7.5])", n=1,
                      steps=STEPS, seed=0)
    assert (out.media - theirs).abs().max() <= 1e-4
    assert out.nfe == 3 * STEPS
    swapped = ours.sample({"text": "make it snow", "image": img}, "nested([image, text], [7.5, 1.5])", n=1,
                          steps=STEPS, seed=0)
    assert (swapped.media - theirs).abs().max() > 1e-3


def test_a_branch_with_both_prompts_is_refused(sd_eps):
    ours = pretrained.load(str(sd_eps))
    with pytest.raises(PretrainedError, match="one prompt"):
        ours.sample({"text": "a cat", "negative_text": "dog"},
                    "cfg(text, 3) + 0.5*(cond(text, negative_text) - cond(text))", n=1, steps=2, seed=0)


def test_conditions_the_pipeline_cannot_take(sd_eps, pix2pix):
    ours = pretrained.load(str(sd_eps))
    with pytest.raises(PretrainedError, match="takes conditions text, negative_text; not 'melody'"):
        ours.sample({"melody": "x.wav"}, "cfg(melody, 3)", n=1, steps=2)
    with pytest.raises(PretrainedError, match="the guidance names 'image'"):
        ours.sample({"text": "a cat"}, "nested([image, text], [1.5, 7.5])", n=1, steps=2)
    edit = pretrained.load(str(pix2pix))
    with pytest.raises(PretrainedError, match="needs an image"):
        edit.sample({"text": "make it snow"}, "cfg(text, 3)", n=1, steps=2)


def test_explain_lists_the_library_modules(sd_eps):
    text = pretrained.load(str(sd_eps)).explain("cfg(text, 7.5)", steps=3)
    for part in ("CLIPTextModel", "DDIMScheduler.step", "UNet2DConditionModel", "AutoencoderKL.decode",
                 "2 branch(es)"):
        assert part in text


def test_cost_guidance_through_the_vae_decoder(sd_eps):
    """``cost(bright, w)`` steers x̂0 by the gradient of the decoded picture's mean pixel value
    (back through the pipeline's VAE decoder): the written pictures get brighter, ``dark`` darker."""
    ours = pretrained.load(str(sd_eps))
    means = {}
    for name, g in [("plain", "cfg(text, 7.5)"), ("bright", "cfg(text, 7.5) + cost(bright, 1000)"),
                    ("dark", "cfg(text, 7.5) + cost(dark, 1000)")]:
        out = ours.sample({"text": "a red cube"}, g, n=4, steps=4, seed=0)
        means[name] = out.media.mean().item()
        assert out.cost_evals == (0 if name == "plain" else 4) and out.nfe == 8
    assert means["bright"] > means["plain"] + 0.01 and means["dark"] < means["plain"] - 0.01, means


@pytest.mark.parametrize(("scheduler", "prediction"), [("PNDMScheduler", "epsilon"),
                                                       ("EulerDiscreteScheduler", "epsilon"),
                                                       ("DPMSolverMultistepScheduler", "v_prediction"),
                                                       ("DDPMScheduler", "epsilon")])
def test_other_schedulers_equal_the_pipeline(scheduler, prediction, tmp_path):
    from framework.pretrained.tiny import save_sd

    folder = save_sd(tmp_path / "sd", scheduler=scheduler, prediction=prediction)
    ours = pretrained.load(str(folder))
    assert type(ours.pipe.scheduler).__name__ == scheduler
    theirs = _pipe(folder)("a red cube", num_inference_steps=4, guidance_scale=7.5,
                           generator=torch.Generator().manual_seed(0), output_type="pt").images
    out = ours.sample({"text": "a red cube"}, "cfg(text, 7.5)", n=1, steps=4, seed=0)
    assert (out.media - theirs).abs().max() <= 1e-4
