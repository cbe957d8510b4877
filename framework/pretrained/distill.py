"""Guidance distillation of a Stable Diffusion pipeline's UNet: a student that gives the guided
prediction in one pass, as :mod:`framework.training.distill` does for polyguide checkpoints.

The teacher is the pipeline wrapped as a model
(:class:`~framework.pretrained.stable_diffusion.StableDiffusion`): the guidance engine evaluates a
family of expressions with a ``{w}`` placeholder (:func:`framework.training.student.family_at`,
e.g. ``"cfg(text, {w})"``) on the teacher's UNet. Inputs are random latents noised by the
pipeline's scheduler, not data: this is a smoke-scale recipe, not a trained student.
The student is the same UNet with diffusers' guidance-scale embedding (``time_cond_proj_dim``, the
``timestep_cond`` input LCM-style pipelines feed ``get_guidance_scale_embedding(w − 1)``), its new
projection zero-initialised so that it starts as the teacher. It regresses the guided prediction
(MSE in the network's own space) at latents noised by the pipeline's scheduler (``add_noise``).

The result is an ordinary ``StableDiffusionPipeline`` whose UNet takes the weight: the pipeline
itself samples it with one UNet call per step (``guidance_scale=w`` becomes the embedding), and
``framework.pretrained`` samples it with ``cond(text, w=4)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from framework.guidance import Guider
from framework.pretrained.loading import PretrainedError
from framework.pretrained.stable_diffusion import StableDiffusion, UNetDenoiser
from framework.training.student import family_at

__all__ = ["distill_guidance", "student_unet"]


def student_unet(unet: Any, embedding_dim: int = 256) -> Any:
    """The teacher UNet's architecture and weights plus a guidance-scale embedding whose projection
    starts at zero (so the student's first predictions are the teacher's unguided ones)."""
    from diffusers import UNet2DConditionModel

    if unet.config.time_cond_proj_dim is not None:
        raise PretrainedError("the UNet already takes a guidance-scale embedding (time_cond_proj_dim)")
    student = UNet2DConditionModel.from_config({**unet.config, "time_cond_proj_dim": embedding_dim})
    missing, unexpected = student.load_state_dict(unet.state_dict(), strict=False)
    if unexpected or any("cond_proj" not in k for k in missing):
        raise PretrainedError(f"the teacher's weights do not initialise the student (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")
    torch.nn.init.zeros_(student.time_embedding.cond_proj.weight)
    student = student.to(unet.device)
    return student if student.dtype == unet.dtype else student.to(dtype=unet.dtype)


def distill_guidance(teacher: StableDiffusion, prompts: Sequence[str], guidance: str = "cfg(text, {w})",
                     weights: tuple[float, float] = (1.0, 8.0), steps: int = 100, batch: int = 4,
                     lr: float = 1e-4, embedding_dim: int = 256, seed: int = 0) -> tuple[Any, list[float]]:
    """Train a one-pass student of ``teacher``'s guided predictions.

    Args:
        teacher: a Stable Diffusion pipeline as a polyguide model, with a VP scheduler (DDIM,
            PNDM, DDPM, DPM++).
        prompts: the prompts to distil on (each batch draws from them).
        guidance: the family of guidance expressions with ``{w}`` (constant in τ).
        weights: ``[low, high]``: each batch draws one ``w`` uniformly from it.
        steps, batch, lr: optimisation (AdamW on the student's weights).
        seed: the random source of prompts, weights, latents, times and noise.

    Returns:
        ``(pipeline, losses)``: a ``StableDiffusionPipeline`` with the student UNet (the teacher's
        other components), and the loss of every step.
    """
    import diffusers

    pipe = teacher.pipe
    if teacher.family.converter.spaces == {teacher.family.native_space}:
        raise PretrainedError(f"distillation draws training latents with {type(pipe.scheduler).__name__}"
                              f".add_noise on VP latents; use a DDIM, PNDM, DDPM or DPM++ scheduler")
    student = student_unet(pipe.unet, embedding_dim).train()
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    net = UNetDenoiser(teacher)
    C, h, w_ = teacher.sample_shape(1, None)
    T = pipe.scheduler.config.num_train_timesteps
    losses = []
    for _ in range(steps):
        w = weights[0] + (weights[1] - weights[0]) * float(torch.rand((), generator=gen))
        texts = [prompts[int(i)] for i in torch.randint(len(prompts), (batch,), generator=gen)]
        conds = teacher.conditions({"text": texts}, batch)
        x0 = torch.randn((batch, C, h, w_), generator=gen).to(teacher.device)
        noise = torch.randn((batch, C, h, w_), generator=gen).to(teacher.device)
        t = torch.randint(0, T, (batch,), generator=gen).to(teacher.device)
        xt = pipe.scheduler.add_noise(x0, noise, t)
        expr = family_at(guidance, w)
        guider = Guider(expr, net, native_space=teacher.family.native_space,
                        converter=teacher.family.converter, specs=teacher.specs)
        with torch.no_grad():
            target = guider.step(xt, t, 0.0, conds, guider.new_state(gen)).denoise
        emb = pipe.get_guidance_scale_embedding(torch.full((batch,), w - 1.0), embedding_dim=embedding_dim)
        pred = student(xt, t, encoder_hidden_states=teacher.prompt_rows(conds),
                       timestep_cond=emb.to(xt.device, xt.dtype)).sample
        loss = torch.nn.functional.mse_loss(pred, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    student.eval().requires_grad_(False)
    out = diffusers.StableDiffusionPipeline(**{**pipe.components, "unet": student})
    out.set_progress_bar_config(disable=True)
    return out, losses
