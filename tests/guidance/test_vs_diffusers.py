"""Our CFG, APG, CFG-rescale and CFG-Zero* against diffusers' guiders on identical inputs.

The "model" returns fixed random predictions keyed by which condition a row keeps, so our
engine and diffusers' guider combine exactly the same tensors, step after step (APG's
momentum and CFG-Zero*'s zero-init are stateful).
"""

import pytest
import torch
from diffusers.guiders import (
    AdaptiveProjectedGuidance,
    ClassifierFreeGuidance,
    ClassifierFreeZeroStarGuidance,
)
from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer

from framework.core.conditions import Conditions, ConditionSpec
from framework.guidance import FlowSpaces, Guider, VPSpaces
from framework.guidance import presets as G

SPECS = {"text": ConditionSpec("text", labels=("a", "b"))}
ALPHA, SIGMA = 0.8, 0.6
SHAPES = [(3, 4, 8, 8), (5, 16)]


def _vp():
    return VPSpaces(lambda t: (torch.full(t.shape, ALPHA, dtype=torch.float64),
                               torch.full(t.shape, SIGMA, dtype=torch.float64)))


class Fixed:
    """Returns ``cond`` on rows keeping ``text`` and ``uncond`` elsewhere; swap in new tensors per step."""

    def __init__(self):
        self.cond = self.uncond = None

    def __call__(self, x, t, c):
        keep = c.present["text"].view(-1, *[1] * (x.ndim - 1))
        n = x.shape[0]
        return torch.where(keep, self.cond.repeat(n // self.cond.shape[0], *[1] * (x.ndim - 1)),
                           self.uncond.repeat(n // self.uncond.shape[0], *[1] * (x.ndim - 1)))


def _steps(shape, n, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(shape, generator=g, dtype=torch.float64).to(dtype),
             torch.randn(shape, generator=g, dtype=torch.float64).to(dtype),
             torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)) for _ in range(n)]


def _run(expr, steps, native="eps", converter=None, output_space=None):
    model = Fixed()
    g = Guider(expr, model, native_space=native, converter=converter or _vp(), specs=SPECS,
               output_space=output_space)
    state = g.new_state()
    outs = []
    for i, (cond, uncond, x) in enumerate(steps):
        model.cond, model.uncond = cond, uncond
        conds = Conditions.from_raw(SPECS, {"text": "a"}, x.shape[0])
        outs.append(g.step(x, torch.full((x.shape[0],), 0.5), i / max(1, len(steps) - 1), conds, state))
    return outs


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("w", [0.0, 1.0, 2.5, 7.5, -1.5])
def test_cfg_matches_diffusers(shape, w):
    steps = _steps(shape, 1, torch.float32, 0)
    ours = _run(G.cfg("text", w), steps)[0].denoise
    cond, uncond, _ = steps[0]
    theirs = ClassifierFreeGuidance(guidance_scale=w).forward(cond, uncond).pred
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("phi", [0.0, 0.7, 1.0])
def test_cfg_rescale_matches_diffusers(shape, phi):
    steps = _steps(shape, 1, torch.float32, 1)
    ours = _run(G.rescale(G.cfg("text", 6.0), phi=phi, space="eps"), steps)[0].denoise
    cond, uncond, _ = steps[0]
    theirs = ClassifierFreeGuidance(guidance_scale=6.0, guidance_rescale=phi).forward(cond, uncond).pred
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def _diffusers_apg(w, eta, momentum, threshold, steps, transform=lambda p, x: p):
    guider = AdaptiveProjectedGuidance(guidance_scale=w - 1.0, use_original_formulation=True, eta=eta,
                                       adaptive_projected_guidance_momentum=momentum,
                                       adaptive_projected_guidance_rescale=threshold)
    out = []
    for i, (cond, uncond, x) in enumerate(steps):
        guider.set_state(i, len(steps), torch.tensor(i))
        if i == 0 and momentum is not None:  # what diffusers' prepare_inputs does at step 0
            guider.momentum_buffer = MomentumBuffer(momentum)
        out.append(guider.forward(transform(cond, x), transform(uncond, x)).pred)
    return out


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("eta", "momentum", "threshold"), [(0.0, -0.5, 0.0), (1.0, None, 0.0),
                                                             (0.3, -0.75, 2.0), (0.0, 0.2, 15.0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_apg_matches_diffusers_over_several_steps(shape, eta, momentum, threshold, dtype):
    """The paper form D_c + (w−1)(Δ⊥ + ηΔ∥) = diffusers' ``use_original_formulation`` with scale w−1."""
    steps = _steps(shape, 4, dtype, 2)
    expr = G.apg("text", 6.0, eta=eta, momentum=momentum or 0.0, norm_threshold=threshold, space="eps")
    ours = [o.denoise for o in _run(expr, steps)]
    theirs = _diffusers_apg(6.0, eta, momentum, threshold, steps)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_apg_in_x0_space_matches_diffusers_applied_to_x0():
    steps = _steps((3, 4, 8, 8), 3, torch.float64, 3)
    ours = [o.denoise for o in _run(G.apg("text", 5.0, eta=0.0, momentum=-0.5, space="x0"), steps)]
    to_x0 = lambda eps, x: (x - SIGMA * eps) / ALPHA
    theirs = _diffusers_apg(5.0, 0.0, -0.5, 0.0, steps, transform=to_x0)
    for a, b, (_, _, x) in zip(ours, theirs, steps, strict=True):
        torch.testing.assert_close(a, (x - ALPHA * b) / SIGMA, rtol=1e-10, atol=1e-10)  # back to ε


def test_a_fresh_state_resets_apg_momentum():
    steps = _steps((2, 16), 3, torch.float64, 4)
    expr = G.apg("text", 6.0, momentum=-0.5, space="eps")
    model = Fixed()
    g = Guider(expr, model, native_space="eps", converter=_vp(), specs=SPECS)
    runs = []
    for _ in range(2):
        state = g.new_state()
        out = []
        for i, (cond, uncond, x) in enumerate(steps):
            model.cond, model.uncond = cond, uncond
            out.append(g.step(x, torch.full((2,), 0.5), i / 2, Conditions.from_raw(SPECS, {"text": "a"}, 2),
                              state).denoise)
        runs.append(out)
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("w", "zero_init"), [(4.0, 0), (4.0, 2), (1.5, 1)])
def test_cfg_zero_star_matches_diffusers(shape, w, zero_init):
    steps = _steps(shape, 4, torch.float32, 5)
    outs = _run(G.cfg_zero_star("text", w, zero_init_steps=zero_init), steps, native="flow_v",
                converter=FlowSpaces())
    guider = ClassifierFreeZeroStarGuidance(guidance_scale=w, zero_init_steps=zero_init)
    for i, (out, (cond, uncond, _)) in enumerate(zip(outs, steps, strict=True)):
        guider.set_state(i, len(steps), torch.tensor(i))
        torch.testing.assert_close(out.denoise, guider.forward(cond, uncond).pred, rtol=1e-5, atol=1e-5)
        assert out.stats.nfe == (0 if i < zero_init else 2)
