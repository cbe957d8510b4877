"""Stable Diffusion and InstructPix2Pix pipelines as diffusion models of polyguide.

The pipeline's own pieces do all the work: ``encode_prompt`` (tokenizer + CLIP text encoder) turns
``text`` / ``negative_text`` into embeddings, ``prepare_latents`` draws the starting latents from the
seeded generator, ``retrieve_timesteps`` / ``scheduler.step`` / ``scale_model_input`` are the
pipeline's scheduler, the UNet predicts, and ``vae.decode`` + the safety checker +
``image_processor.postprocess`` give the images. Only the guidance combination is ours: each step
the engine evaluates its branches in one batched UNet call, as the pipeline evaluates its two (or,
for InstructPix2Pix, three). So ``cfg(text, 7.5)`` with the same seed is the pipeline's
``guidance_scale=7.5`` output, and ``nested([image, text], [1.5, 7.5])`` is InstructPix2Pix's
``image_guidance_scale=1.5, guidance_scale=7.5``.

Rows of a branch without ``text`` get ``negative_text``'s embedding where that condition is kept,
else the empty prompt's (what the pipeline's unconditional half is); a branch without ``image``
gets zero image latents (InstructPix2Pix's unconditional image).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from framework.core.conditions import Conditions, ConditionSpec
from framework.generators.base import Family, progress_tau
from framework.guidance.spaces import SpaceConverter, VPSpaces
from framework.pretrained.base import PretrainedModel, last_rows, prompt_rows
from framework.pretrained.loading import PretrainedError, absent_components, weights_kwargs

__all__ = ["InstructPix2Pix", "SchedulerDiffusion", "StableDiffusion"]

_SPACE = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}


class NativeSpaceOnly(SpaceConverter):
    """A converter that allows no conversion: for schedulers whose state is not the VP latent
    (Euler-type ``x = x0 + σ·ε``), guidance must stay in the network's own space."""

    def __init__(self, space: str) -> None:
        self.spaces = frozenset({space})

    def convert(self, value, src, dst, *, x, t, mass=1.0):
        self._require(src, dst)
        return value


class SchedulerDiffusion(Family):
    """Diffusion sampled exactly as a diffusers pipeline samples: its scheduler, its latents.

    Args:
        pipe: the pipeline (its ``scheduler``, ``prepare_latents``, ``prepare_extra_step_kwargs``,
            ``vae_scale_factor`` are used as they are).
    """

    name = "diffusion"

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        sched = pipe.scheduler
        kind = sched.config.get("prediction_type", "epsilon")
        if kind not in _SPACE:
            raise PretrainedError(f"scheduler prediction_type {kind!r} is not supported; "
                                  f"supported: {', '.join(_SPACE)}")
        self.native_space = self.output_space = _SPACE[kind]
        vp = getattr(sched, "alphas_cumprod", None) is not None and float(sched.init_noise_sigma) == 1.0
        self.converter = (VPSpaces.from_alphas_cumprod(sched.alphas_cumprod) if vp
                          else NativeSpaceOnly(self.native_space))
        self.steps = 0
        self.eta = 0.0

    def sample(self, models, guidance, conditions, shape, steps, **kwargs):
        self.steps = steps  # init_state sets the scheduler's timesteps before drawing latents
        return super().sample(models, guidance, conditions, shape, steps, **kwargs)

    def init_state(self, n: int, shape: tuple[int, ...], generator, device, init=None) -> torch.Tensor:
        """The pipeline's order: timesteps first (they set ``init_noise_sigma``), then
        ``prepare_latents(n, C, H, W, ...)`` with the seeded generator → ``[n, C, h, w]``."""
        from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import retrieve_timesteps

        retrieve_timesteps(self.pipe.scheduler, self.steps, device)
        C, h, w = shape
        f = self.pipe.vae_scale_factor
        return self.pipe.prepare_latents(n, C, h * f, w * f, self.pipe.unet.dtype, device, generator, init)

    def run(self, guider, state, x, conditions, steps, generator, bar, callback):
        sched = self.pipe.scheduler
        extra = self.pipe.prepare_extra_step_kwargs(generator, self.eta)
        timesteps = sched.timesteps
        B = x.shape[0]
        for i, t in enumerate(timesteps):
            out = guider.step(x, t.expand(B), progress_tau(i, len(timesteps)), conditions, state)
            if out.renoise is not None:
                raise PretrainedError("a separate renoise prediction (CFG++) is not supported with a "
                                      "pipeline's scheduler")
            x = sched.step(out.denoise, t, x, **extra, return_dict=False)[0]
            bar.update(1)
            if callback is not None:
                callback(i, x, out)
        return x


class UNetDenoiser:
    """``fn(x [N, C, h, w], t [N], conditions) -> [N, C, h, w]``: the pipeline's
    ``scale_model_input`` and UNet, with per-row prompt embeddings (and image latents)."""

    def __init__(self, model: StableDiffusion) -> None:
        self.model = model

    def __call__(self, x, t, conditions: Conditions, perturbations=None) -> torch.Tensor:
        if perturbations is not None:
            raise PretrainedError("in-network perturbations (PAG, SEG, skip layers) are not supported on "
                                  "a pipeline's UNet")
        m = self.model
        pipe = m.pipe
        # one time for every row (the sampler's t, broadcast: stride 0), as the pipeline passes it
        step = t[0] if t.stride(0) == 0 or bool((t == t[0]).all()) else t
        xin = pipe.scheduler.scale_model_input(x, step)
        extra, states, embedding = last_rows(m).get(conditions, "unet inputs", lambda: (
            m.extra_input(conditions), m.prompt_rows(conditions), m.guidance_embedding(conditions)))
        if extra is not None:
            xin = torch.cat([xin, extra], dim=1)
        return pipe.unet(xin, step, encoder_hidden_states=states, timestep_cond=embedding,
                         return_dict=False)[0]


class StableDiffusion(PretrainedModel):
    """A diffusers ``StableDiffusionPipeline``: conditions ``text`` and ``negative_text`` (prompts),
    images ``[B, 3, H, W]`` in ``[0, 1]``."""

    pipeline_class = "StableDiffusionPipeline"
    default_guidance = "cfg(text, 7.5)"
    default_steps = 50
    text_conditions = ("text", "negative_text")

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        dim = pipe.text_encoder.config.hidden_size
        self.specs = {n: ConditionSpec(n, kind="sequence", dim=dim) for n in self.text_conditions}
        if pipe.unet.config.time_cond_proj_dim is not None:  # a guidance-distilled UNet takes w
            self.specs["w"] = ConditionSpec("w", kind="scalar")
        self.family = SchedulerDiffusion(pipe)
        size = pipe.unet.config.sample_size
        self.height, self.width = (size, size) if isinstance(size, int) else tuple(size)
        self._null: torch.Tensor | None = None

    @classmethod
    def load(cls, path_or_id: str, **kwargs: Any) -> StableDiffusion:
        import diffusers

        pipe_cls = getattr(diffusers, cls.pipeline_class)
        kwargs = {**absent_components(path_or_id, pipe_cls), **kwargs}
        pipe = pipe_cls.from_pretrained(path_or_id, **weights_kwargs(path_or_id), **kwargs)
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe)

    @property
    def device(self) -> torch.device:
        """Where the pipeline runs (looked up once: diffusers walks every module to find it)."""
        if getattr(self, "_device", None) is None:
            self._device = self.pipe.device
        return self._device

    def to(self, device: torch.device | str) -> StableDiffusion:
        self.pipe.to(device)
        self._null = self._device = None
        return self

    # ------------------------------------------------------------------ conditions
    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Prompt embeddings ``[n, S, D]`` exactly as the pipeline's ``encode_prompt`` makes them."""
        return self.pipe.encode_prompt(texts, self.device, 1, False)[0]

    def null_text(self) -> torch.Tensor:
        """The empty prompt's embedding ``[1, S, D]``: the pipeline's unconditional input."""
        if self._null is None:
            self._null = self.encode_text([""])
        return self._null

    def conditions(self, raw: Mapping[str, Any], n: int) -> Conditions:
        """``text`` / ``negative_text``: a string or ``n`` strings → embeddings ``[n, S, D]``."""
        self.check_raw(raw)
        values, present = {}, {}
        for name in self.specs:
            value = raw.get(name)
            if value is None:
                values[name] = self._absent(name, n)
                present[name] = torch.zeros(n, dtype=torch.bool, device=self.device)
                continue
            values[name] = self.encode_value(name, value, n)
            present[name] = torch.ones(n, dtype=torch.bool, device=self.device)
        return Conditions(values, present)

    def _absent(self, name: str, n: int) -> torch.Tensor:
        if name == "w":
            return torch.ones(n, device=self.device)
        return self.null_text().expand(n, -1, -1)

    def encode_value(self, name: str, value: Any, n: int) -> torch.Tensor:
        if name == "w":
            return self.specs["w"].encode(float(value), n).to(self.device)
        texts = [value] * n if isinstance(value, str) else list(value)
        if len(texts) != n or not all(isinstance(s, str) for s in texts):
            raise PretrainedError(f"condition {name!r} takes a prompt (a string) or {n} of them")
        return self.encode_text(texts)

    def prompt_rows(self, conditions: Conditions) -> torch.Tensor:
        """Per row: ``text`` where kept, else ``negative_text`` where kept, else the empty prompt."""
        return last_rows(self).get(conditions, "denoiser",
                                   lambda: prompt_rows(conditions, self.null_text(), "denoiser"))

    def guidance_embedding(self, conditions: Conditions) -> torch.Tensor | None:
        """A guidance-distilled UNet's ``timestep_cond`` ``[N, E]``: the pipeline's
        ``get_guidance_scale_embedding(w − 1)`` of each row's ``w`` (1 where absent: no guidance);
        ``None`` for an ordinary UNet."""
        dim = self.pipe.unet.config.time_cond_proj_dim
        if dim is None:
            return None
        w = conditions.values["w"].float()
        w = torch.where(conditions.present["w"], w, torch.ones_like(w))
        return self.pipe.get_guidance_scale_embedding(w.cpu() - 1, embedding_dim=dim).to(self.device)

    def extra_input(self, conditions: Conditions) -> torch.Tensor | None:
        """Channels concatenated to the UNet input (InstructPix2Pix's image latents)."""
        return None

    # ------------------------------------------------------------------ costs
    def decoded_cost(self, fn: Any) -> Any:
        """A cost on latents that judges the decoded picture: ``fn(images [B, 3, H, W] in [0, 1])
        -> [B]`` after the pipeline's VAE decoder, differentiable back to the latents ``x̂0``."""

        def cost(x0: torch.Tensor, conditions: Conditions) -> torch.Tensor:
            return fn((self.vae_decode(x0) / 2 + 0.5).clamp(0, 1))

        return cost

    @property
    def costs(self) -> dict[str, Any]:
        """Costs a guidance can name (``cost(bright, 50)``), each through the VAE decoder:
        ``bright`` = 1 − mean pixel value, ``dark`` = mean pixel value."""
        return {"bright": self.decoded_cost(lambda img: 1 - img.mean(dim=(1, 2, 3))),
                "dark": self.decoded_cost(lambda img: img.mean(dim=(1, 2, 3)))}

    # ------------------------------------------------------------------ sampling
    def networks(self) -> dict[str, Any]:
        return {"main": UNetDenoiser(self)}

    def sample_shape(self, steps: int, conditions: Conditions) -> tuple[int, ...]:
        return (self.pipe.unet.config.in_channels, self.height, self.width)

    def vae_decode(self, latents: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``vae.decode(latents / scaling_factor)`` → images ``[B, 3, H, W]`` in about ``[-1, 1]``."""
        vae = self.pipe.vae
        return vae.decode(latents / vae.config.scaling_factor, return_dict=False, generator=generator)[0]

    def decode(self, samples: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The pipeline's decoding: ``vae.decode(latents / scaling_factor)``, its safety checker,
        ``image_processor.postprocess`` → ``[B, 3, H, W]`` in ``[0, 1]``."""
        pipe = self.pipe
        image = self.vae_decode(samples, generator)
        image, nsfw = pipe.run_safety_checker(image, self.device, samples.dtype)
        keep = [True] * image.shape[0] if nsfw is None else [not x for x in nsfw]
        return pipe.image_processor.postprocess(image, output_type="pt", do_denormalize=keep)

    def passes(self) -> list[str]:
        p = self.pipe
        sched = type(p.scheduler).__name__
        return [f"once: {type(p.tokenizer).__name__} + {type(p.text_encoder).__name__} (encode_prompt) for "
                f"each prompt and the empty prompt",
                f"once: prepare_latents (seeded) after {sched}.set_timesteps",
                f"per step: {sched}.scale_model_input, one {type(p.unet).__name__} call over the branches' "
                f"rows, our guidance combination, {sched}.step",
                f"once: {type(p.vae).__name__}.decode, safety checker "
                f"({'none' if p.safety_checker is None else type(p.safety_checker).__name__}), postprocess"]


class InstructPix2Pix(StableDiffusion):
    """A diffusers ``StableDiffusionInstructPix2PixPipeline``: conditions ``text``,
    ``negative_text`` and ``image`` (the picture to edit: a file, PIL image or tensor)."""

    pipeline_class = "StableDiffusionInstructPix2PixPipeline"
    default_guidance = "nested([image, text], [1.5, 7.5])"
    default_steps = 100

    def __init__(self, pipe: Any) -> None:
        super().__init__(pipe)
        self.specs["image"] = ConditionSpec("image", kind="sequence", dim=pipe.vae.config.latent_channels)
        self._image_hw: tuple[int, int] | None = None

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return self.pipe._encode_prompt(texts, self.device, 1, False)

    def _absent(self, name: str, n: int) -> torch.Tensor:
        if name != "image":
            return super()._absent(name, n)
        if self._image_hw is None:
            raise PretrainedError("the StableDiffusionInstructPix2PixPipeline needs an image to edit: "
                                  "give the image condition (e.g. --cond image=photo.png)")
        return torch.zeros(n, self.pipe.vae.config.latent_channels, *self._image_hw, device=self.device)

    def conditions(self, raw: Mapping[str, Any], n: int) -> Conditions:
        if raw.get("image") is None:
            self._image_hw = None
        else:  # encode the image first: its size sets the latents' (and the absent rows') size
            self._image_hw = None
            self._image = self.encode_value("image", raw["image"], n)
            self._image_hw = tuple(self._image.shape[-2:])
        raw = {k: v for k, v in raw.items() if k != "image"}
        out = super().conditions(raw, n)
        if self._image_hw is not None:
            out.values["image"] = self._image
            out.present["image"] = torch.ones(n, dtype=torch.bool, device=self.device)
        return out

    @torch.no_grad()
    def encode_value(self, name: str, value: Any, n: int) -> torch.Tensor:
        if name != "image":
            return super().encode_value(name, value, n)
        if isinstance(value, (str, Path)):
            from PIL import Image, UnidentifiedImageError

            try:
                with Image.open(value) as im:
                    value = im.convert("RGB")
            except (OSError, UnidentifiedImageError) as e:
                raise PretrainedError(f"image {value}: not a readable picture ({e})") from None
        image = self.pipe.image_processor.preprocess(value)
        latents = self.pipe.prepare_image_latents(image, image.shape[0], 1, self.pipe.unet.dtype, self.device,
                                                  False)  # the VAE encoding's mode, as the pipeline takes
        if latents.shape[0] not in (1, n):
            raise PretrainedError(f"condition 'image' takes one picture or {n}, got {latents.shape[0]}")
        return latents.expand(n, -1, -1, -1)

    def extra_input(self, conditions: Conditions) -> torch.Tensor:
        keep = conditions.present["image"].view(-1, 1, 1, 1)
        img = conditions.values["image"]
        return torch.where(keep, img, torch.zeros_like(img))

    def sample_shape(self, steps: int, conditions: Conditions) -> tuple[int, ...]:
        h, w = conditions.values["image"].shape[-2:]
        return (self.pipe.vae.config.latent_channels, h, w)
