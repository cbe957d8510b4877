"""Flow matching / rectified flow: ``x_t = (1 − t)·x0 + t·ε``, velocity ``v = ε − x0``.

Training regresses ``v`` at ``t ~ U(0, 1)`` (or logit-normal); sampling integrates
``dx/dt = v`` from ``t = 1`` (noise) to ``t = 0`` with Euler or Heun steps. The network may
predict velocity (default) or any space :class:`FlowSpaces` converts (``eps``, ``x0``), and
guidance can act in ``x0`` (APG, rescale) because the conversions are exact.

CFG++ (``cfg_pp``, Chung et al. 2024) carries a separate re-noise prediction. On the straight
path an Euler step is exactly a DDIM step, ``x_{t'} = (1 − t')·x̂0 + t'·ε̂`` with ``x̂0`` and ``ε̂``
both from one velocity; CFG++ takes ``x̂0`` from the guided prediction and ``ε̂`` from the re-noise
(unconditional) one, ``x_{t'} = (1 − t')·x̂0(v_λ) + t'·ε̂(v_∅)``. It needs the Euler solver.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from framework.core.conditions import Conditions
from framework.generators.base import Family, StepCallback, progress_tau, randn
from framework.guidance import GuidanceState, Guider
from framework.guidance.spaces import FlowSpaces

__all__ = ["Flow"]


class Flow(Family):
    """Rectified-flow family.

    Args:
        prediction: what the network predicts: ``flow_v`` (default), ``eps`` or ``x0``.
        solver: ``euler`` or ``heun`` (2 guided evaluations per step, the last step Euler).
        time_sampling: ``uniform`` or ``logit_normal`` training times (SD3-style).
        t_min: the last integration time.
        t_max: the first integration time; an ``eps``-predicting network cannot give a
            velocity at exactly ``t = 1`` (``x0 = (x − tε)/(1 − t)``), so it starts just below.
        shift: the timestep shift of SD3 (Esser et al. 2024, eq. 23), ``t ↦ s·t / (1 + (s − 1)·t)``,
            applied to training times and to the sampling grid alike. ``s > 1`` spends more
            training and more steps at high noise, where the coarse layout is decided; data whose
            tokens carry many correlated values (a 128-value log-mel token) keeps that layout
            visible through much more noise than a pixel does. ``1`` (default) leaves times as they are.
    """

    name = "flow"
    output_space = "flow_v"

    def __init__(self, prediction: Literal["flow_v", "eps", "x0"] = "flow_v",
                 solver: Literal["euler", "heun"] = "euler",
                 time_sampling: Literal["uniform", "logit_normal"] = "uniform", t_min: float = 0.0,
                 t_max: float | None = None, shift: float = 1.0) -> None:
        if prediction not in ("flow_v", "eps", "x0"):
            raise ValueError(f"flow prediction must be 'flow_v', 'eps' or 'x0', got {prediction!r}")
        if solver not in ("euler", "heun"):
            raise ValueError(f"flow solver must be 'euler' or 'heun', got {solver!r}")
        if time_sampling not in ("uniform", "logit_normal"):
            raise ValueError(f"time_sampling must be 'uniform' or 'logit_normal', got {time_sampling!r}")
        self.native_space, self.solver, self.time_sampling = prediction, solver, time_sampling
        if not shift > 0:
            raise ValueError(f"flow shift must be positive, got {shift}")
        self.shift = float(shift)
        self.t_min = float(t_min)
        self.t_max = float(t_max) if t_max is not None else (1.0 - 1e-3 if prediction == "eps" else 1.0)
        if not 0.0 <= self.t_min < self.t_max <= 1.0:
            raise ValueError(f"flow needs 0 ≤ t_min < t_max ≤ 1, got {self.t_min}, {self.t_max}")
        self.converter = FlowSpaces()

    def _noise(self, x0: torch.Tensor, generator: torch.Generator | None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x_t, t, ε)`` with training times ``t`` ``[B]`` and ``x_t = (1 − t)·x0 + t·ε``."""
        B = x0.shape[0]
        if self.time_sampling == "uniform":
            t = torch.rand(B, generator=generator)
        else:
            t = torch.sigmoid(torch.randn(B, generator=generator))
        t = self.shifted(t).to(x0.device, x0.dtype)
        eps = randn(tuple(x0.shape), generator, x0.device).to(x0.dtype)
        tt = t.view(-1, *[1] * (x0.ndim - 1))
        return (1 - tt) * x0 + tt * eps, t, eps

    def loss(self, model, x0: torch.Tensor, conditions: Conditions,
             generator: torch.Generator | None = None) -> torch.Tensor:
        xt, t, eps = self._noise(x0, generator)
        target = {"flow_v": eps - x0, "eps": eps, "x0": x0}[self.native_space]
        return F.mse_loss(model(xt, t, conditions), target)

    def shifted(self, t: torch.Tensor) -> torch.Tensor:
        """SD3's timestep shift of times ``t`` (any shape) in ``[0, 1]``: ``s·t / (1 + (s − 1)·t)``
        (monotone, fixes 0 and 1; the identity for ``s = 1``)."""
        if self.shift == 1.0:
            return t
        return self.shift * t / (1 + (self.shift - 1) * t)

    def training_inputs(self, x0, generator=None):
        xt, t, _ = self._noise(x0, generator)
        return xt, t, None

    def times(self, steps: int, device: torch.device) -> torch.Tensor:
        """``steps + 1`` integration times from ``t_max`` down to ``t_min`` (uniform, then shifted)."""
        return self.shifted(torch.linspace(self.t_max, self.t_min, steps + 1, device=device))

    def run(self, guider: Guider, state: GuidanceState, x: torch.Tensor, conditions: Conditions,
            steps: int, generator, bar, callback: StepCallback | None) -> torch.Tensor:
        ts = self.times(steps, x.device)
        B = x.shape[0]
        for i in range(steps):
            t, t_next = ts[i], ts[i + 1]
            tau = progress_tau(i, steps)
            out = guider.step(x, t.expand(B), tau, conditions, state)
            if out.renoise is not None:
                if self.solver != "euler":
                    raise ValueError("a separate renoise prediction (CFG++) needs solver='euler' on the flow "
                                     f"family (this model uses {self.solver!r})")
                x = self._renoise_step(x, t.expand(B), t_next, out.denoise, out.renoise, guider)
                bar.update(1)
                if callback is not None:
                    callback(i, x, out)
                continue
            x_euler = x + (t_next - t) * out.denoise
            if self.solver == "heun" and i < steps - 1:
                out2 = guider.step(x_euler, t_next.expand(B), tau, conditions, state, corrector=True)
                x = x + (t_next - t) * 0.5 * (out.denoise + out2.denoise)
            else:
                x = x_euler
            bar.update(1)
            if callback is not None:
                callback(i, x, out)
        return x

    def _renoise_step(self, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, denoise: torch.Tensor,
                      renoise: torch.Tensor, guider: Guider) -> torch.Tensor:
        """CFG++ step ``x_{t'} = (1 − t')·x̂0(denoise) + t'·ε̂(renoise)`` (``x``, predictions
        ``[B, *shape]``, ``t`` ``[B]``): the Euler step when both predictions are the same."""
        x0 = guider.converter.convert(denoise, self.output_space, "x0", x=x, t=t)
        eps = guider.converter.convert(renoise, self.output_space, "eps", x=x, t=t)
        return ((1 - t_next) * x0 + t_next * eps).to(x.dtype)
