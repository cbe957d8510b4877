"""aMUSEd (diffusers ``AmusedPipeline``) as a masked (discrete) model of polyguide.

The pipeline's CLIP tokenizer and text encoder (its pooled ``text_embeds`` and the penultimate
hidden states), the ``UVit2DModel`` (logits over the VQ codebook at every token), the
``AmusedScheduler`` (which samples tokens and re-masks the least confident by its schedule) and
the ``VQModel`` decoder do the work; our engine combines the branches' logits each step, as the
pipeline combines its two. ``cfg(text, w)`` with the same seed is the pipeline's
``guidance_scale=w``; negative prompts, APG and CFG-Zero*-style rules apply to the logits too.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from framework.core.conditions import Conditions, ConditionSpec
from framework.generators.base import Family, progress_tau
from framework.guidance.spaces import DiscreteSpaces
from framework.pretrained.base import last_rows
from framework.pretrained.loading import PretrainedError
from framework.pretrained.stable_diffusion import StableDiffusion

__all__ = ["Amused", "PipelineMasked"]


class PipelineMasked(Family):
    """Masked token sampling as the aMUSEd pipeline does it: all-mask start, the scheduler's steps.

    Guidance combines raw logits (``native_space = output_space = "logits"``), as the pipeline."""

    name = "masked"
    native_space = output_space = "logits"

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.converter = DiscreteSpaces()
        self.temperature: tuple[float, float] = (2.0, 0.0)  # the pipeline's default

    def init_state(self, n: int, shape: tuple[int, ...], generator, device, init=None) -> torch.Tensor:
        """``[n, h, w]`` of the mask token (or ``init``)."""
        if init is not None:
            return init.to(device)
        mask_id = self.pipe.scheduler.config.mask_token_id
        return torch.full((n, *shape), mask_id, dtype=torch.long, device=device)

    def run(self, guider, state, x, conditions, steps, generator, bar, callback):
        sched = self.pipe.scheduler
        sched.set_timesteps(steps, self.temperature, x.device)
        B = x.shape[0]
        for i, t in enumerate(sched.timesteps):
            tau = progress_tau(i, len(sched.timesteps))
            out = guider.step(x, t.float().expand(B), tau, conditions, state)
            if out.renoise is not None:
                raise PretrainedError("a separate renoise prediction (CFG++) does not apply to masked tokens")
            x = sched.step(model_output=out.denoise, timestep=t, sample=x, generator=generator).prev_sample
            bar.update(1)
            if callback is not None:
                callback(i, x, out)
        return x


class UVitDenoiser:
    """``fn(tokens [N, h, w], t, conditions) -> logits``: the ``UVit2DModel`` with per-row text
    states, pooled embeddings and the pipeline's micro-conditioning."""

    def __init__(self, model: Amused) -> None:
        self.model = model

    def __call__(self, x, t, conditions: Conditions, perturbations=None) -> torch.Tensor:
        if perturbations is not None:
            raise PretrainedError("in-network perturbations are not supported on aMUSEd's transformer")
        m = self.model

        def inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            rows = m.prompt_rows(conditions)
            states, pooled = rows[:, :-1, :m.embed_dim], rows[:, -1, :m.pooled_dim]
            return states, pooled, m.micro_conds(x.shape[0], states.dtype)

        states, pooled, micro = last_rows(m).get(conditions, "transformer inputs", inputs)
        return m.pipe.transformer(x, micro_conds=micro, pooled_text_emb=pooled, encoder_hidden_states=states)


class Amused(StableDiffusion):
    """A diffusers ``AmusedPipeline``: conditions ``text`` and ``negative_text``; samples are VQ
    token grids ``[B, h, w]``, media images ``[B, 3, H, W]`` in ``[0, 1]``."""

    pipeline_class = "AmusedPipeline"
    default_guidance = "cfg(text, 10)"
    default_steps = 12
    crop = (0, 0)
    aesthetic_score = 6.0

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.embed_dim = pipe.text_encoder.config.hidden_size
        self.pooled_dim = pipe.text_encoder.config.projection_dim
        dim = max(self.embed_dim, self.pooled_dim)
        self.specs = {n: ConditionSpec(n, kind="sequence", dim=dim) for n in self.text_conditions}
        self.family = PipelineMasked(pipe)
        size = pipe.transformer.config.sample_size
        self.height = self.width = size
        self._null = None

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``[n, S + 1, max(D, P)]``: the text encoder's penultimate hidden states, then its pooled
        ``text_embeds``, from the pipeline's tokenization (padded to ``model_max_length``)."""
        tok = self.pipe.tokenizer
        ids = tok(texts, return_tensors="pt", padding="max_length", truncation=True,
                  max_length=tok.model_max_length).input_ids.to(self.device)
        out = self.pipe.text_encoder(ids, return_dict=True, output_hidden_states=True)
        dim = max(self.embed_dim, self.pooled_dim)
        states = F.pad(out.hidden_states[-2], (0, dim - self.embed_dim))
        return torch.cat([states, F.pad(out.text_embeds, (0, dim - self.pooled_dim))[:, None]], dim=1)

    @property
    def costs(self) -> dict[str, Any]:
        """None: VQ tokens have no gradient to follow."""
        return {}

    def micro_conds(self, n: int, dtype: torch.dtype) -> torch.Tensor:
        """The pipeline's ``[width, height, crop_x, crop_y, aesthetic]`` per row ``[n, 5]``."""
        f = self.pipe.vae_scale_factor
        values = (self.width * f, self.height * f, *self.crop, self.aesthetic_score)
        if getattr(self, "_micro", (None,))[0] != (values, dtype):
            self._micro = ((values, dtype), torch.tensor(values, device=self.device, dtype=dtype)[None])
        return self._micro[1].expand(n, -1)

    def networks(self) -> dict[str, Any]:
        return {"main": UVitDenoiser(self)}

    def sample_shape(self, steps: int, conditions: Conditions) -> tuple[int, ...]:
        return (self.height, self.width)

    def decode(self, samples: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """``vqvae.decode`` of the token grid (codebook lookup), clipped, ``postprocess``."""
        vq = self.pipe.vqvae
        B, h, w = samples.shape
        image = vq.decode(samples, force_not_quantize=True, shape=(B, h, w, vq.config.latent_channels)).sample
        return self.pipe.image_processor.postprocess(image.clip(0, 1), "pt")

    def passes(self) -> list[str]:
        p = self.pipe
        sched = type(p.scheduler).__name__
        return [f"once: {type(p.tokenizer).__name__} + {type(p.text_encoder).__name__} for each prompt and "
                f"the empty prompt",
                f"per step: one {type(p.transformer).__name__} call over the branches' rows, our guidance on "
                f"the logits, {sched}.step (samples tokens, re-masks the least confident)",
                f"once: {type(p.vqvae).__name__}.decode, postprocess"]
