"""Stable Diffusion 3 (diffusers ``StableDiffusion3Pipeline``) as a flow model of polyguide.

The pipeline's ``encode_prompt`` (two CLIP encoders and T5, when present), ``prepare_latents``,
``retrieve_timesteps`` (with its dynamic shift ``mu`` where the scheduler uses one), the
``FlowMatchEulerDiscreteScheduler`` step, the ``SD3Transformer2DModel`` and the VAE
(``latents / scaling_factor + shift_factor``) do the work; the guidance engine sees the rectified
flow ``x_σ = (1 − σ)·x0 + σ·ε`` at the scheduler's ``σ`` with the transformer's velocity, so
guidance in ``x0`` space (APG), CFG-Zero* and guidance intervals apply as on our flow models.
``cfg(text, w)`` with the same seed is the pipeline's ``guidance_scale=w``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from framework.core.conditions import Conditions
from framework.generators.base import Family, progress_tau
from framework.guidance.spaces import FlowSpaces
from framework.pretrained.base import last_rows
from framework.pretrained.loading import PretrainedError
from framework.pretrained.stable_diffusion import StableDiffusion

__all__ = ["PipelineFlow", "StableDiffusion3"]


class PipelineFlow(Family):
    """Flow matching sampled as a diffusers flow pipeline samples: its latents, shift and steps."""

    name = "flow"
    native_space = output_space = "flow_v"

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.converter = FlowSpaces()
        self.steps = 0
        self.timestep: torch.Tensor | None = None  # the scheduler's timestep of the running step

    def sample(self, models, guidance, conditions, shape, steps, **kwargs):
        self.steps = steps
        return super().sample(models, guidance, conditions, shape, steps, **kwargs)

    def init_state(self, n: int, shape: tuple[int, ...], generator, device, init=None) -> torch.Tensor:
        """The pipeline's order: ``prepare_latents`` (seeded) → ``[n, C, h, w]``, then the
        timesteps (``mu`` from the latent size where the scheduler shifts dynamically)."""
        from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import (
            calculate_shift,
            retrieve_timesteps,
        )

        pipe = self.pipe
        C, h, w = shape
        f = pipe.vae_scale_factor
        latents = pipe.prepare_latents(n, C, h * f, w * f, pipe.transformer.dtype, device, generator, init)
        cfg, kw = pipe.scheduler.config, {}
        if cfg.get("use_dynamic_shifting", None):
            p = pipe.transformer.config.patch_size
            kw["mu"] = calculate_shift((h // p) * (w // p), cfg.get("base_image_seq_len", 256),
                                       cfg.get("max_image_seq_len", 4096), cfg.get("base_shift", 0.5),
                                       cfg.get("max_shift", 1.16))
        retrieve_timesteps(pipe.scheduler, self.steps, device, **kw)
        return latents

    def run(self, guider, state, x, conditions, steps, generator, bar, callback):
        sched = self.pipe.scheduler
        B = x.shape[0]
        timesteps, sigmas = sched.timesteps, sched.sigmas.to(x.device)
        for i, t in enumerate(timesteps):
            self.timestep = t
            out = guider.step(x, sigmas[i].expand(B), progress_tau(i, len(timesteps)), conditions, state)
            if out.renoise is not None:
                raise PretrainedError("a separate renoise prediction (CFG++) is not supported with a "
                                      "pipeline's scheduler")
            x = sched.step(out.denoise, t, x, return_dict=False)[0]
            bar.update(1)
            if callback is not None:
                callback(i, x, out)
        return x


class SD3Denoiser:
    """``fn(x [N, C, h, w], σ [N], conditions) -> v [N, C, h, w]``: the transformer at the
    scheduler's timestep with per-row prompt and pooled embeddings."""

    def __init__(self, model: StableDiffusion3) -> None:
        self.model = model

    def __call__(self, x, t, conditions: Conditions, perturbations=None) -> torch.Tensor:
        if perturbations is not None:
            raise PretrainedError("in-network perturbations are not supported on a pipeline's transformer")
        m = self.model

        def split() -> tuple[torch.Tensor, torch.Tensor]:
            rows = m.prompt_rows(conditions)
            return rows[:, :-1, :m.embed_dim], rows[:, -1, :m.pooled_dim]

        embeds, pooled = last_rows(m).get(conditions, "transformer inputs", split)
        step = m.family.timestep.expand(x.shape[0])
        return m.pipe.transformer(hidden_states=x, timestep=step, encoder_hidden_states=embeds,
                                  pooled_projections=pooled, return_dict=False)[0]


class StableDiffusion3(StableDiffusion):
    """A diffusers ``StableDiffusion3Pipeline``: conditions ``text`` and ``negative_text``; images
    ``[B, 3, H, W]`` in ``[0, 1]``. A prompt's value packs the pipeline's two embeddings: the
    sequence ``[S, D]`` and, as one more row, the pooled vector (zero-padded)."""

    pipeline_class = "StableDiffusion3Pipeline"
    default_guidance = "cfg(text, 7)"
    default_steps = 28
    max_sequence_length = 256

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        probe = pipe.encode_prompt([""], None, None, pipe.device, 1, False,
                                   max_sequence_length=self.max_sequence_length)
        self.embed_dim, self.pooled_dim = probe[0].shape[-1], probe[2].shape[-1]
        from framework.core.conditions import ConditionSpec

        dim = max(self.embed_dim, self.pooled_dim)
        self.specs = {n: ConditionSpec(n, kind="sequence", dim=dim) for n in self.text_conditions}
        self.family = PipelineFlow(pipe)
        size = pipe.default_sample_size
        self.height, self.width = (size, size) if isinstance(size, int) else tuple(size)
        self._null = None

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``[n, S + 1, max(D, P)]``: ``encode_prompt``'s embeddings then the pooled one."""
        embeds, _, pooled, _ = self.pipe.encode_prompt(texts, None, None, self.device, 1, False,
                                                       max_sequence_length=self.max_sequence_length)
        dim = max(self.embed_dim, self.pooled_dim)
        embeds = F.pad(embeds, (0, dim - embeds.shape[-1]))
        return torch.cat([embeds, F.pad(pooled, (0, dim - pooled.shape[-1]))[:, None]], dim=1)

    def networks(self) -> dict[str, Any]:
        return {"main": SD3Denoiser(self)}

    def sample_shape(self, steps: int, conditions: Conditions) -> tuple[int, ...]:
        return (self.pipe.transformer.config.in_channels, self.height, self.width)

    def vae_decode(self, latents: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``vae.decode(latents / scaling_factor + shift_factor)`` → images in about ``[-1, 1]``."""
        vae = self.pipe.vae
        return vae.decode(latents / vae.config.scaling_factor + vae.config.shift_factor, return_dict=False)[0]

    def decode(self, samples: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The pipeline's decoding (:meth:`vae_decode`, ``image_processor.postprocess``) →
        ``[B, 3, H, W]`` in ``[0, 1]``."""
        return self.pipe.image_processor.postprocess(self.vae_decode(samples), output_type="pt")

    def passes(self) -> list[str]:
        p = self.pipe
        encoders = [type(e).__name__ for e in (p.text_encoder, p.text_encoder_2, p.text_encoder_3)
                    if e is not None]
        sched = type(p.scheduler).__name__
        return [f"once: encode_prompt ({' + '.join(encoders)}) for each prompt and the empty prompt",
                f"once: prepare_latents (seeded), then {sched}.set_timesteps",
                f"per step: one {type(p.transformer).__name__} call over the branches' rows, our guidance "
                f"on the velocity at the scheduler's σ, {sched}.step",
                f"once: {type(p.vae).__name__}.decode (scaling and shift factors), postprocess"]
