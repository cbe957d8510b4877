"""Guidance against closed-form oracles on an analytic Gaussian mixture.

The toy's branch predictions come from component responsibilities; the oracle is the
autograd gradient of the exact log-density of the *target* distribution each method
defines (e.g. CFG: ``p(x|c)^w p(x)^{1−w}``), mapped to ε by ``ε = −σ·∇ log p``. The two
routes share nothing but the mixture parameters.
"""

import pytest
import torch

from framework.core.conditions import Conditions
from framework.guidance import Guider, VPSpaces, cond, uncond
from framework.guidance import presets as G

SIGMA = 0.8


def _oracle_eps(toy, x, target: dict) -> torch.Tensor:
    """``−σ·∇ Σ_k λ_k log p_t(x | S_k)`` for ``target = {raw-conditions: λ}``."""
    x = x.detach().double().requires_grad_(True)
    t = torch.zeros(x.shape[0])
    total = 0.0
    for raw, lam in target.items():
        conds = Conditions.from_raw(toy.specs, dict(raw), x.shape[0])
        total = total + lam * toy.log_prob(x, t, conds).sum()
    (grad,) = torch.autograd.grad(total, x)
    return -SIGMA * grad


def _guided(toy, expr, x, raw: dict) -> torch.Tensor:
    g = Guider(expr, toy, native_space="eps", converter=VPSpaces(toy.alpha_sigma), specs=toy.specs)
    conds = Conditions.from_raw(toy.specs, raw, x.shape[0])
    return g.step(x, torch.zeros(x.shape[0]), 0.5, conds, g.new_state()).denoise


@pytest.fixture
def x():
    return torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.5


SQ, GR, RED = (("shape", "square"),), (("color", "green"),), (("color", "red"),)
SQ_GR = (("shape", "square"), ("color", "green"))
NONE = ()


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0, 7.5, -1.0])
def test_cfg_is_the_gamma_powered_distribution(toy, x, w):
    got = _guided(toy, G.cfg("shape", w), x, dict(SQ))
    torch.testing.assert_close(got, _oracle_eps(toy, x, {SQ: w, NONE: 1 - w}), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("ws", [(2.0, 3.0), (1.0, 1.0), (4.0, -1.0)])
def test_independent_is_a_product_of_experts(toy, x, ws):
    # p(x) · Π_k (p(x|c_k)/p(x))^{w_k}
    got = _guided(toy, G.independent(["shape", "color"], ws), x, dict(SQ_GR))
    oracle = _oracle_eps(toy, x, {SQ: ws[0], GR: ws[1], NONE: 1 - sum(ws)})
    torch.testing.assert_close(got, oracle, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("ws", [(2.0, 3.0), (1.0, 1.0), (0.0, 5.0)])
def test_nested_is_the_chained_ratio(toy, x, ws):
    # p(x) · (p(x|c1)/p(x))^{s1} · (p(x|c1,c2)/p(x|c1))^{s2}
    got = _guided(toy, G.nested(["shape", "color"], ws), x, dict(SQ_GR))
    oracle = _oracle_eps(toy, x, {NONE: 1 - ws[0], SQ: ws[0] - ws[1], SQ_GR: ws[1]})
    torch.testing.assert_close(got, oracle, rtol=1e-9, atol=1e-9)


def test_nested_with_unit_weights_telescopes_to_the_full_condition(toy, x):
    got = _guided(toy, G.nested(["shape", "color"], [1.0, 1.0]), x, dict(SQ_GR))
    torch.testing.assert_close(got, _oracle_eps(toy, x, {SQ_GR: 1.0}), rtol=1e-9, atol=1e-9)


def test_nested_is_order_sensitive(toy, x):
    a = _guided(toy, G.nested(["shape", "color"], [2.0, 4.0]), x, dict(SQ_GR))
    b = _guided(toy, G.nested(["color", "shape"], [2.0, 4.0]), x, dict(SQ_GR))
    assert (a - b).abs().max() > 1e-3


@pytest.mark.parametrize("w", [2.0, 5.0])
def test_negative_value_is_the_ratio_to_the_negative(toy, x, w):
    # p(x|shape, red) · (p(x|shape, green)/p(x|shape, red))^w
    sq_red = (("shape", "square"), ("color", "red"))
    got = _guided(toy, G.negative(("shape", "color"), "color", "red", w), x, dict(SQ_GR))
    oracle = _oracle_eps(toy, x, {SQ_GR: w, sq_red: 1 - w})
    torch.testing.assert_close(got, oracle, rtol=1e-9, atol=1e-9)


def test_joint_guides_towards_the_full_condition(toy, x):
    got = _guided(toy, G.joint(["shape", "color"], 3.0), x, dict(SQ_GR))
    torch.testing.assert_close(got, _oracle_eps(toy, x, {SQ_GR: 3.0, NONE: -2.0}), rtol=1e-9, atol=1e-9)


def test_hand_written_expression_equals_preset(toy, x):
    hand = uncond() + 2.0 * (cond("shape") - uncond()) + 3.0 * (cond("shape", "color") - cond("shape"))
    torch.testing.assert_close(_guided(toy, hand, x, dict(SQ_GR)),
                               _guided(toy, G.nested(["shape", "color"], [2.0, 3.0]), x, dict(SQ_GR)))


def test_guidance_sharpens_samples_towards_the_condition(toy):
    """End to end on the exact model: probability-flow sampling with CFG raises accuracy."""
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)  # the toy spans ±1.5
    sched.set_timesteps(30)
    ac = sched.alphas_cumprod.double()
    toy.alpha_sigma = lambda t: (ac[t.long()].sqrt(), (1 - ac[t.long()]).sqrt())
    acc = {}
    for w in (1.0, 4.0):
        g = Guider(G.cfg(("shape", "color"), w), toy, native_space="eps",
                   converter=VPSpaces.from_alphas_cumprod(sched.alphas_cumprod), specs=toy.specs)
        state = g.new_state()
        x = torch.randn(400, 2, generator=torch.Generator().manual_seed(1))
        conds = Conditions.from_raw(toy.specs, dict(SQ_GR), 400)
        for i, t in enumerate(sched.timesteps):
            out = g.step(x, t.expand(400), i / (len(sched.timesteps) - 1), conds, state)
            x = sched.step(out.denoise, t, x).prev_sample
        shape, color = toy.classify(x)
        acc[w] = float(((shape == 1) & (color == 1)).double().mean())
    assert acc[4.0] > acc[1.0] + 0.1, acc


def test_toy_x0_and_eps_predictions_agree(toy, x):
    conds = Conditions.from_raw(toy.specs, dict(SQ), x.shape[0])
    t = torch.zeros(x.shape[0])
    eps, x0 = toy.eps(x, t, conds), toy.x0(x, t, conds)
    torch.testing.assert_close(x, 0.6 * x0 + SIGMA * eps)  # x_t = α·E[x0] + σ·E[ε]
