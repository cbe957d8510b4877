"""Guidance distillation of a pipeline's UNet (smoke run on the tiny Stable Diffusion)."""

import torch

from framework import pretrained
from framework.guidance import Guider, parse
from framework.pretrained.distill import distill_guidance, student_unet
from framework.pretrained.stable_diffusion import StableDiffusion, UNetDenoiser

PROMPTS = ["a red cube", "a blue ball", "a cat on the grass"]


def _guided_error(teacher, unet, w=4.0):
    """MSE of ``unet`` (given w) to the teacher's cfg(text, w) on a fixed batch of noised latents."""
    g = torch.Generator().manual_seed(123)
    conds = teacher.conditions({"text": PROMPTS}, 3)
    xt, t = torch.randn(3, 4, 8, 8, generator=g), torch.tensor([100, 500, 900])
    guider = Guider(parse(f"cfg(text, {w})"), UNetDenoiser(teacher), native_space=teacher.family.native_space,
                    converter=teacher.family.converter, specs=teacher.specs)
    with torch.no_grad():
        target = guider.step(xt, t, 0.0, conds, guider.new_state()).denoise
        emb = teacher.pipe.get_guidance_scale_embedding(torch.full((3,), w - 1), embedding_dim=256)
        pred = unet(xt, t, encoder_hidden_states=teacher.prompt_rows(conds), timestep_cond=emb).sample
    return float(((pred - target) ** 2).mean())


def test_a_distilled_unet_is_sampled_in_one_pass_by_the_pipeline_and_by_us(sd_eps):
    teacher = pretrained.load(str(sd_eps))
    torch.manual_seed(0)
    pipe, losses = distill_guidance(teacher, PROMPTS, weights=(1.0, 8.0), steps=40, batch=4, lr=1e-4)
    assert len(losses) == 40 and all(torch.isfinite(torch.tensor(losses)))
    before = _guided_error(teacher, student_unet(teacher.pipe.unet))  # = the teacher's unguided output
    after = _guided_error(teacher, pipe.unet)
    assert after < 0.8 * before, (before, after)  # measured: 0.0096 → 0.0053
    assert sum(losses[-10:]) < sum(losses[:10])
    # the student takes w: the pipeline samples it with one UNet call per step, and so do we
    calls = []
    pipe.unet.register_forward_hook(lambda *a: calls.append(1))
    theirs = pipe("a red cube", num_inference_steps=3, guidance_scale=4.0,
                  generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert len(calls) == 3  # one UNet call per step: no CFG batch
    student = StableDiffusion(pipe)
    assert "w" in student.specs
    out = student.sample({"text": "a red cube"}, "cond(text, w=4)", n=1, steps=3, seed=0)
    assert len(calls) == 6 and out.nfe == 3
    assert (out.media - theirs).abs().max() <= 1e-4
