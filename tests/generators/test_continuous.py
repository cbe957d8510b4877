"""Diffusion and flow samplers on the analytic toy (exact predictions, known answers)."""

import pytest
import torch
from diffusers import DDIMScheduler

from framework.core.conditions import Conditions
from framework.generators import Diffusion, Flow
from framework.guidance import presets as G
from framework.toy.model import GaussianMixtureToy

TARGET = {"shape": "square", "color": "green"}  # component (1, 1), mean (-0.5, 0.0)


def _toy_for(family) -> GaussianMixtureToy:
    if isinstance(family, Diffusion):
        ac = family.train_scheduler.alphas_cumprod.double()
        return GaussianMixtureToy(lambda t: (ac[t.long()].sqrt(), (1 - ac[t.long()]).sqrt()))
    return GaussianMixtureToy(lambda t: (1 - t.double(), t.double()))


def _as_native(toy, family):
    """Present the toy's exact prediction in the family's native space.

    Diffusion converts from ε; flow converts from ``E[x0|x_t]``, which (unlike ε) still
    determines the velocity at pure noise, t = 1.
    """
    by_eps = isinstance(family, Diffusion) and not family.zero_terminal_snr  # ε says nothing at ᾱ_T = 0
    src, predict = ("eps", toy.eps) if by_eps else ("x0", toy.x0)

    def model(x, t, c):
        return family.converter.convert(predict(x, t, c), src, family.native_space, x=x, t=t)
    return model


def _accuracy(toy, x) -> float:
    s, k = toy.classify(x)
    return float(((s == 1) & (k == 1)).double().mean())


FAMILIES = [Diffusion(sampler="ddim"), Diffusion(sampler="dpm++2m"), Diffusion(sampler="ddpm"),
            Diffusion(prediction="v", sampler="ddim"), Diffusion(prediction="x0", sampler="ddim"),
            Diffusion(prediction="v", sampler="ddim", zero_terminal_snr=True),
            Flow(), Flow(prediction="eps"), Flow(solver="heun")]
IDS = ["ddim", "dpm++2m", "ddpm", "ddim-v", "ddim-x0", "ddim-v-zsnr", "flow-euler", "flow-eps", "flow-heun"]


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_guidance_raises_accuracy_in_every_continuous_sampler(family):
    toy = _toy_for(family)
    conds = Conditions.from_raw(toy.specs, TARGET, 300)
    acc, nfe = {}, {}
    for name, guidance in [("w=1", "cond(shape, color)"), ("cfg", G.cfg(("shape", "color"), 3.0)),
                           ("nested", G.nested(["shape", "color"], [2.0, 4.0]))]:
        out = family.sample(_as_native(toy, family), guidance, conds, (2,), 20, specs=toy.specs,
                            generator=torch.Generator().manual_seed(0))
        acc[name], nfe[name] = _accuracy(toy, out.samples), out.branches_per_step
    assert acc["cfg"] > acc["w=1"] + 0.1 and acc["nested"] > acc["w=1"] + 0.1, acc
    # Heun adds a corrector evaluation on every step but the last
    per_step = 2 if getattr(family, "solver", "euler") == "heun" else 1
    for name, branches in [("w=1", 1), ("cfg", 2), ("nested", 3)]:
        assert nfe[name] == [per_step * branches] * 19 + [branches], (name, nfe[name])


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_conditional_samples_have_the_exact_gaussian_moments(family):
    """Sampling a single Gaussian component recovers N(μ, s²).

    DDPM's ancestral variance is biased low with few steps (0.31 at 40 steps, 0.345 at 250
    for s = 0.35), so it gets more steps.
    """
    steps = 250 if getattr(family, "sampler", "") == "ddpm" else 40
    toy = _toy_for(family)
    toy.means = toy.means * 0 + torch.tensor([0.7, -0.4], dtype=torch.float64)  # one Gaussian
    conds = Conditions.from_raw(toy.specs, TARGET, 4000)
    out = family.sample(_as_native(toy, family), "cond(shape, color)", conds, (2,), steps, specs=toy.specs,
                        generator=torch.Generator().manual_seed(0))
    assert out.samples.mean(0).tolist() == pytest.approx([0.7, -0.4], abs=0.03)
    assert out.samples.std(0).tolist() == pytest.approx([toy.std, toy.std], abs=0.03)


@pytest.mark.parametrize("w", [1.0, 4.0])
def test_ddim_matches_a_hand_written_diffusers_loop(w):
    family = Diffusion(sampler="ddim")
    toy = _toy_for(family)
    conds = Conditions.from_raw(toy.specs, TARGET, 16)
    uncond = Conditions.from_raw(toy.specs, {}, 16)
    ours = family.sample(toy, G.cfg(("shape", "color"), w), conds, (2,), 15, specs=toy.specs,
                         generator=torch.Generator().manual_seed(3)).samples

    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=False)
    sched.set_timesteps(15)
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(3))
    for t in sched.timesteps:
        tt = t.expand(16)
        e_c, e_u = toy(x, tt, conds), toy(x, tt, uncond)
        x = sched.step(e_u + w * (e_c - e_u), t, x).prev_sample
    torch.testing.assert_close(ours, x, rtol=1e-5, atol=1e-5)


def test_flow_euler_matches_a_hand_written_loop():
    family = Flow()
    toy = _toy_for(family)
    model = _as_native(toy, family)
    conds = Conditions.from_raw(toy.specs, TARGET, 8)
    uncond = Conditions.from_raw(toy.specs, {}, 8)
    ours = family.sample(model, G.cfg(("shape", "color"), 2.5), conds, (2,), 10, specs=toy.specs,
                         generator=torch.Generator().manual_seed(5)).samples
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(5))
    ts = torch.linspace(1, 0, 11)
    for i in range(10):
        t = ts[i].expand(8)
        v_c, v_u = model(x, t, conds), model(x, t, uncond)
        x = x + (ts[i + 1] - ts[i]) * (v_u + 2.5 * (v_c - v_u))
    torch.testing.assert_close(ours, x, rtol=1e-5, atol=1e-5)


def test_parameterisations_agree_on_the_same_model():
    """ε, x0 and v networks wrapping the same exact model give the same DDIM samples."""
    results = []
    for prediction in ("eps", "x0", "v"):
        family = Diffusion(prediction=prediction, sampler="ddim")
        toy = _toy_for(family)
        conds = Conditions.from_raw(toy.specs, TARGET, 32)
        out = family.sample(_as_native(toy, family), G.cfg(("shape", "color"), 2.0), conds, (2,), 12,
                            specs=toy.specs, generator=torch.Generator().manual_seed(1))
        results.append(out.samples)
    torch.testing.assert_close(results[0], results[1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(results[0], results[2], rtol=1e-4, atol=1e-4)


def test_cfg_pp_renoises_with_the_unconditional_prediction():
    family = Diffusion(sampler="ddim")
    toy = _toy_for(family)
    conds = Conditions.from_raw(toy.specs, TARGET, 200)
    kw = dict(specs=toy.specs, generator=torch.Generator().manual_seed(0))
    pp = family.sample(toy, G.cfg_pp(("shape", "color"), 0.6), conds, (2,), 20, **kw).samples
    plain = family.sample(toy, G.cfg(("shape", "color"), 0.6), conds, (2,), 20,
                          specs=toy.specs, generator=torch.Generator().manual_seed(0)).samples
    assert (pp - plain).abs().max() > 1e-2  # the renoise path is really taken
    assert _accuracy(toy, pp) > _accuracy(toy, plain)  # CFG++ at λ<1 still guides: manifold step
    with pytest.raises(ValueError, match="needs sampler='ddim'"):
        Diffusion(sampler="dpm++2m").sample(toy, G.cfg_pp(("shape", "color"), 0.6), conds, (2,), 3,
                                            specs=toy.specs)


def test_flow_cfg_pp_matches_a_hand_written_ddim_style_step():
    """Oracle: x_{t'} = (1 − t')·x̂0(v_λ) + t'·ε̂(v_∅), v_λ = v_∅ + λ(v_c − v_∅), written out here."""
    family = Flow()
    toy = _toy_for(family)
    model = _as_native(toy, family)
    conds = Conditions.from_raw(toy.specs, TARGET, 64)
    none = Conditions.from_raw(toy.specs, {}, 64)
    x_init = torch.randn(64, 2, generator=torch.Generator().manual_seed(3))
    lam, steps = 0.6, 8
    pp = family.sample(model, G.cfg_pp(("shape", "color"), lam), conds, (2,), steps, specs=toy.specs,
                       init=x_init.clone()).samples
    x, ts = x_init.clone(), family.times(steps, x_init.device)
    for i in range(steps):
        t, t2 = ts[i].expand(64), ts[i + 1]
        v_c, v_u = model(x, t, conds), model(x, t, none)
        v = v_u + lam * (v_c - v_u)
        x0, eps = x - t[:, None] * v, x + (1 - t[:, None]) * v_u
        x = (1 - t2) * x0 + t2 * eps
    torch.testing.assert_close(pp, x.to(pp.dtype), rtol=1e-5, atol=1e-5)
    plain = family.sample(model, G.cfg(("shape", "color"), lam), conds, (2,), steps, specs=toy.specs,
                          init=x_init.clone()).samples
    assert (pp - plain).abs().max() > 1e-2  # the re-noising is not ignored
    assert _accuracy(toy, pp) > _accuracy(toy, plain)
    with pytest.raises(ValueError, match="needs solver='euler'"):
        Flow(solver="heun").sample(model, G.cfg_pp(("shape", "color"), 0.6), conds, (2,), 3, specs=toy.specs)


def test_callback_and_progress_options():
    family = Flow()
    toy = _toy_for(family)
    seen = []
    conds = Conditions.from_raw(toy.specs, TARGET, 4)
    family.sample(_as_native(toy, family), "cfg(shape, 2)", conds, (2,), 5, specs=toy.specs,
                  callback=lambda i, x, out: seen.append((i, tuple(x.shape), out.stats.nfe)))
    assert seen == [(i, (4, 2), 2) for i in range(5)]


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Diffusion(prediction="score"), "prediction must be one of"),
    (lambda: Diffusion(sampler="euler"), "sampler must be one of"),
    (lambda: Flow(solver="rk4"), "solver must be 'euler' or 'heun'"),
    (lambda: Flow(t_min=1.0), "0 ≤ t_min < t_max ≤ 1"),
])
def test_bad_family_options(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_zero_terminal_snr_starts_from_pure_noise():
    family = Diffusion(prediction="v", zero_terminal_snr=True)
    assert float(family.train_scheduler.alphas_cumprod[-1]) == 0.0
    sched = family.make_scheduler()
    sched.set_timesteps(10)
    assert int(sched.timesteps[0]) == 999  # trailing spacing: the first step is the terminal one
