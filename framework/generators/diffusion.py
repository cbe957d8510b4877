"""Diffusion with diffusers' noise schedules and step rules.

``x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·ε`` over ``num_train_timesteps`` integer steps. The network
predicts ``eps``, ``x0`` or ``v``; training noises with ``DDPMScheduler.add_noise`` and the
``v`` target comes from ``get_velocity``. Sampling delegates each step to a diffusers
scheduler — ``ddpm``, ``ddim`` (η = 0) or ``dpm++2m`` (``DPMSolverMultistepScheduler``,
2nd order) — configured with the same betas and prediction type. CFG++'s separate
re-noise prediction uses a DDIM step of our own (diffusers' step takes one prediction).
``zero_terminal_snr=True`` rescales the betas so the last step is pure noise (Lin et al.,
2023); it is meant for ``v`` prediction.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from framework.core.conditions import Conditions
from framework.generators.base import Family, StepCallback, progress_tau, randn
from framework.guidance import GuidanceState, Guider
from framework.guidance.spaces import VPSpaces

__all__ = ["Diffusion"]

_PREDICTION = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
# diffusers' schedulers, imported when a diffusion model is built (diffusers takes seconds to import)
_SAMPLERS = {"ddpm": "DDPMScheduler", "ddim": "DDIMScheduler", "dpm++2m": "DPMSolverMultistepScheduler"}


def _scheduler(sampler: str):
    """The diffusers scheduler class of ``sampler`` (a key of ``_SAMPLERS``)."""
    import diffusers

    return getattr(diffusers, _SAMPLERS[sampler])


class Diffusion(Family):
    """Discrete-time diffusion.

    Args:
        prediction: ``eps``, ``x0`` or ``v``.
        sampler: ``ddim`` (default), ``ddpm`` or ``dpm++2m``.
        num_train_timesteps, beta_schedule: the noise schedule (diffusers names).
        zero_terminal_snr: rescale betas to zero terminal SNR.
    """

    name = "diffusion"

    def __init__(self, prediction: Literal["eps", "x0", "v"] = "eps",
                 sampler: Literal["ddim", "ddpm", "dpm++2m"] = "ddim", num_train_timesteps: int = 1000,
                 beta_schedule: str = "squaredcos_cap_v2", zero_terminal_snr: bool = False) -> None:
        if prediction not in _PREDICTION:
            raise ValueError(f"diffusion prediction must be one of {list(_PREDICTION)}, got {prediction!r}")
        if sampler not in _SAMPLERS:
            raise ValueError(f"diffusion sampler must be one of {list(_SAMPLERS)}, got {sampler!r}")
        self.native_space = self.output_space = prediction
        self.sampler = sampler
        self.config = dict(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                           prediction_type=_PREDICTION[prediction])
        self.zero_terminal_snr = zero_terminal_snr
        self.train_scheduler = _scheduler("ddpm")(**self.config, rescale_betas_zero_snr=zero_terminal_snr,
                                             clip_sample=False)
        self.converter = VPSpaces.from_alphas_cumprod(self.train_scheduler.alphas_cumprod)

    def make_scheduler(self):
        """A fresh diffusers scheduler for one sampling run (schedulers keep per-run state)."""
        extra = {"clip_sample": False} if self.sampler != "dpm++2m" else {}
        if self.sampler != "dpm++2m" and self.zero_terminal_snr:
            extra["rescale_betas_zero_snr"] = True
        if self.sampler == "ddim":
            extra["timestep_spacing"] = "trailing" if self.zero_terminal_snr else "leading"
        return _scheduler(self.sampler)(**self.config, **extra)

    def _noise(self, x0: torch.Tensor, generator: torch.Generator | None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x_t, t, ε)``: integer training steps ``t`` ``[B]``, noised by the scheduler."""
        sched = self.train_scheduler
        T = sched.config.num_train_timesteps
        t = torch.randint(0, T, (x0.shape[0],), generator=generator).to(x0.device)
        eps = randn(tuple(x0.shape), generator, x0.device).to(x0.dtype)
        return sched.add_noise(x0, eps, t), t, eps

    def loss(self, model, x0: torch.Tensor, conditions: Conditions,
             generator: torch.Generator | None = None) -> torch.Tensor:
        xt, t, eps = self._noise(x0, generator)
        v = self.train_scheduler.get_velocity(x0, eps, t) if self.native_space == "v" else None
        target = {"eps": eps, "x0": x0, "v": v}[self.native_space]
        return F.mse_loss(model(xt, t, conditions), target)

    def training_inputs(self, x0, generator=None):
        xt, t, _ = self._noise(x0, generator)
        return xt, t, None

    def run(self, guider: Guider, state: GuidanceState, x: torch.Tensor, conditions: Conditions,
            steps: int, generator, bar, callback: StepCallback | None) -> torch.Tensor:
        sched = self.make_scheduler()
        sched.set_timesteps(steps, device=x.device)
        timesteps = sched.timesteps
        B = x.shape[0]
        alphas = self.train_scheduler.alphas_cumprod.to(x.device)
        for i, t in enumerate(timesteps):
            out = guider.step(x, t.expand(B), progress_tau(i, len(timesteps)), conditions, state)
            if out.renoise is not None:
                if self.sampler != "ddim":
                    raise ValueError("a separate renoise prediction (CFG++) needs sampler='ddim'")
                prev = int(timesteps[i + 1]) if i + 1 < len(timesteps) else -1
                x = self._ddim_renoise_step(x, t, prev, out.denoise, out.renoise, guider, alphas)
            else:
                kwargs = {"generator": generator} if self.sampler == "ddpm" else {}
                x = sched.step(out.denoise, t, x, **kwargs).prev_sample
            bar.update(1)
            if callback is not None:
                callback(i, x, out)
        return x

    def _ddim_renoise_step(self, x, t, prev: int, denoise, renoise, guider: Guider, alphas):
        """DDIM (η = 0) with ``x̂0`` from ``denoise`` and the re-noise direction from ``renoise``."""
        B = x.shape[0]
        tt = t.expand(B)
        x0 = guider.converter.convert(denoise, self.output_space, "x0", x=x, t=tt)
        eps = guider.converter.convert(renoise, self.output_space, "eps", x=x, t=tt)
        a_prev = alphas[prev] if prev >= 0 else torch.ones((), device=x.device, dtype=alphas.dtype)
        return (a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps).to(x.dtype)
