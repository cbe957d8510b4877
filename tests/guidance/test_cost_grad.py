"""Cost-gradient guidance against closed forms on the exact Gaussian-mixture toy.

The cost is a quadratic ``C(x0) = ½ Σ_d k_d (x0_d − m_d)²`` (gradient ``k ⊙ (x0 − m)``). The
oracle computes the reference branch's ``x̂0`` and its Jacobian ``∂x̂0/∂x_t = (α/σ²)·Cov[x0 | x_t]``
(second-order Tweedie) from the mixture's posterior in closed form — no autograd, no space
converter — and adds the term by the hand-written per-space formulas of the docs.
"""

import itertools
import math

import pytest
import torch

from framework.core.conditions import Conditions
from framework.generators import Diffusion, Flow, Masked
from framework.guidance import (
    AffineError,
    CostError,
    FlowSpaces,
    Guider,
    SpaceError,
    VPSpaces,
    cond,
    parse,
    uncond,
    window,
)
from framework.guidance import presets as G
from framework.toy.model import CategoricalMixtureToy, GaussianMixtureToy, flow_alpha_sigma

K = torch.tensor([1.0, 2.0], dtype=torch.float64)
M = torch.tensor([0.7, -0.4], dtype=torch.float64)
RAW = {"shape": "square", "color": "green"}


def quadratic(x0: torch.Tensor, conditions: Conditions) -> torch.Tensor:
    return 0.5 * (K.to(x0) * (x0 - M.to(x0)) ** 2).sum(-1)


def vp_alpha_sigma(t: torch.Tensor):
    t = t.double()
    return torch.cos(t * math.pi / 2), torch.sin(t * math.pi / 2)


FAMILIES = {"vp": (vp_alpha_sigma, VPSpaces(vp_alpha_sigma), ["eps", "x0", "v", "score"]),
            "flow": (flow_alpha_sigma, FlowSpaces(), ["flow_v", "x0", "eps", "score"])}
CASES = [(fam, native, out) for fam, (_, _, spaces) in FAMILIES.items()
         for native in ("eps", "x0") for out in spaces]


def _native_model(toy: GaussianMixtureToy, native: str):
    """The exact toy predicting ``eps`` or ``x0`` natively (both differentiable in ``x``)."""
    return toy.eps if native == "eps" else toy.x0


def _posterior(toy: GaussianMixtureToy, x, t, present_shape: int):
    """Closed-form ``E[x0 | x_t]`` ``[B, 2]`` and ``Cov[x0 | x_t]`` ``[B, 2, 2]`` given shape only."""
    a, s = (v.double().reshape(-1, 1) for v in toy.alpha_sigma(t))
    var = a * a * toy.std ** 2 + s * s
    mu = toy.means[present_shape]  # the components of this shape: [C, 2]
    d = x[:, None, :] - a[:, :, None] * mu[None]
    r = torch.softmax(-0.5 * (d ** 2).sum(-1) / var, dim=1)  # equal variances: no log-det term
    post = mu[None] + (a * toy.std ** 2 / var)[:, :, None] * d
    mean = (r[:, :, None] * post).sum(1)
    second = (r[:, :, None, None] * post[..., :, None] * post[..., None, :]).sum(1)
    cov = (toy.std ** 2 * s * s / var)[:, :, None] * torch.eye(2, dtype=x.dtype) + second \
        - mean[:, :, None] * mean[:, None, :]
    return mean, cov, a, s


def _term(g, a, s, w, space):
    """The hand-written cost term ``w·Δ`` in each space, for ``Δ_x0 = −g``."""
    return {"x0": -w * g, "eps": w * (a / s) * g, "score": -w * (a / s ** 2) * g,
            "v": w * ((a * a + s * s) / s) * g, "flow_v": w * g / s}[space]


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(3)
    B = 16
    x = torch.randn(B, 2, generator=g, dtype=torch.float64) * 1.3
    t = torch.linspace(0.15, 0.85, B, dtype=torch.float64)
    return x, t


@pytest.mark.parametrize("through_model", [False, True])
@pytest.mark.parametrize(("family", "native", "space"), CASES)
def test_guided_prediction_matches_the_closed_form(batch, family, native, space, through_model):
    alpha_sigma, conv, _ = FAMILIES[family]
    toy = GaussianMixtureToy(alpha_sigma)
    x, t = batch
    w_cfg, w = 2.5, 0.8
    expr = G.cfg("shape", w_cfg) + G.cost("quad", w, through_model=through_model)
    guider = Guider(expr, _native_model(toy, native), native_space=native, converter=conv,
                    specs=toy.specs, output_space=space, costs={"quad": quadratic})
    conds = Conditions.from_raw(toy.specs, RAW, x.shape[0])
    with torch.no_grad():  # as the samplers call it: the engine turns autograd on where needed
        got = guider.step(x, t, 0.5, conds, guider.new_state()).denoise

    # oracle: CFG from the exact branch predictions, then the cost term by hand
    only_shape = Conditions.from_raw(toy.specs, {"shape": "square"}, x.shape[0])
    none = Conditions.from_raw(toy.specs, {}, x.shape[0])
    x0_ref, cov, a, s = _posterior(toy, x, t, present_shape=1)
    torch.testing.assert_close(x0_ref, toy.x0(x, t, only_shape), rtol=1e-9, atol=1e-9)
    x0_u = toy.x0(x, t, none)
    x0_cfg = x0_u + w_cfg * (x0_ref - x0_u)
    eps_cfg = (x - a * x0_cfg) / s
    base = {"eps": eps_cfg, "x0": x0_cfg, "score": -eps_cfg / s, "v": a * eps_cfg - s * x0_cfg,
            "flow_v": (x - x0_cfg) / s}[space]
    grad_x0 = K * (x0_ref - M)
    g = torch.einsum("bij,bi->bj", (a / s ** 2)[:, :, None] * cov, grad_x0) if through_model else grad_x0
    torch.testing.assert_close(got, base + _term(g, a, s, w, space), rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("through_model", [False, True])
@pytest.mark.parametrize("family", ["vp", "flow"])
def test_cfg_plus_cost_is_the_sum_of_its_parts(batch, family, through_model):
    alpha_sigma, conv, spaces = FAMILIES[family]
    toy = GaussianMixtureToy(alpha_sigma)
    x, t = batch
    conds = Conditions.from_raw(toy.specs, RAW, x.shape[0])
    term = G.cost("quad", 1.5, through_model=through_model)

    def run(expr, space):
        gd = Guider(expr, toy, native_space="eps", converter=conv, specs=toy.specs,
                    output_space=space, costs={"quad": quadratic})
        return gd.step(x, t, 0.5, conds, gd.new_state()).denoise

    for space in spaces:
        whole = run(G.cfg("shape", 3.0) + term, space)
        parts = run(G.cfg("shape", 3.0), space) + run(cond("shape") + term, space) - run(cond("shape"), space)
        torch.testing.assert_close(whole, parts, rtol=1e-9, atol=1e-9)


def _sample_distance(family: str, w: float, through_model: bool, n: int = 256) -> tuple[float, object]:
    if family == "flow":
        fam = Flow(prediction="eps")
        toy = GaussianMixtureToy(flow_alpha_sigma)
    else:
        fam = Diffusion(prediction="eps", num_train_timesteps=1000)
        toy = GaussianMixtureToy(fam.converter.alpha_sigma)
    conds = Conditions.from_raw(toy.specs, {"shape": "square"}, n)
    expr = cond("shape") + G.cost("quad", w, through_model=through_model)
    out = fam.sample(toy, expr, conds, (2,), steps=16, specs=toy.specs,
                     generator=torch.Generator().manual_seed(0), costs={"quad": quadratic})
    return float((out.samples.double() - M).norm(dim=1).mean()), out


@pytest.mark.parametrize("through_model", [False, True])
@pytest.mark.parametrize("family", ["vp", "flow"])
def test_samples_approach_the_cost_minimum_as_the_weight_grows(family, through_model):
    # w·k ≤ 1 for the largest curvature k: a gradient step on x̂0 that does not overshoot the
    # minimum (at w·k = 1 it lands on it; beyond, it oscillates, as any gradient step would)
    ws = [0.0, 0.1, 0.25, 0.5]
    dists = [_sample_distance(family, w, through_model)[0] for w in ws]
    assert all(a > b for a, b in itertools.pairwise(dists)), dists
    assert dists[-1] < 0.25 * dists[0], dists


def test_sampling_counts_backward_passes_and_cost_evaluations():
    _, out = _sample_distance("flow", 1.0, through_model=True, n=8)
    assert out.nfe == 16 and out.backward == 16 and out.cost_evals == 16
    _, out = _sample_distance("flow", 1.0, through_model=False, n=8)
    assert out.nfe == 16 and out.backward == 0 and out.cost_evals == 16
    # Heun: the corrector's evaluation adds its own forward, backward and cost evaluation
    toy = GaussianMixtureToy(flow_alpha_sigma)
    conds = Conditions.from_raw(toy.specs, {"shape": "square"}, 8)
    out = Flow(prediction="eps", solver="heun").sample(
        toy, cond("shape") + G.cost("quad", 1.0, through_model=True), conds, (2,), steps=5,
        specs=toy.specs, costs={"quad": quadratic})
    assert [s.nfe for s in out.stats] == [2, 2, 2, 2, 1]
    assert [s.backward for s in out.stats] == [2, 2, 2, 2, 1] == [s.cost_evals for s in out.stats]


class _Recorder:
    """The toy, recording each call's rows and whether autograd was on."""

    def __init__(self, toy):
        self.toy, self.calls = toy, []

    def __call__(self, x, t, c):
        self.calls.append((x.shape[0], torch.is_grad_enabled()))
        return self.toy.eps(x, t, c)


@pytest.mark.parametrize(("expr", "nfe", "calls", "backward", "evals"), [
    (G.cfg("shape", 3) + G.cost("quad", 1), 2, [(32, False)], 0, 1),
    (G.cfg("shape", 3) + G.cost("quad", 1, through_model=True), 2, [(16, False), (16, True)], 1, 1),
    # the same cost twice (weights merge) is evaluated once
    (G.cfg("shape", 3) + G.cost("quad", 1) + G.cost("quad", 2).within(0.4, 0.6), 2, [(32, False)], 0, 1),
    # two costs through the same branch: two backward passes over one graph
    (G.cfg("shape", 3) + G.cost("quad", 1, through_model=True) + G.cost("pull", 1, through_model=True),
     2, [(16, False), (16, True)], 2, 2),
    # x̂0 read at a branch nothing else evaluates costs one more NFE
    (cond("shape") + G.cost("quad", 1, at="color"), 2, [(32, False)], 0, 1),
    (uncond() + G.cost("quad", 1, at=cond("shape"), through_model=True), 2, [(16, False), (16, True)], 1, 1),
])
def test_step_statistics_count_what_the_cost_terms_spend(batch, expr, nfe, calls, backward, evals):
    toy = GaussianMixtureToy(vp_alpha_sigma)
    rec = _Recorder(toy)
    x, t = batch
    conds = Conditions.from_raw(toy.specs, RAW, x.shape[0])
    costs = {"quad": quadratic, "pull": lambda x0, c: x0.pow(2).sum(-1)}
    gd = Guider(expr, rec, native_space="eps", converter=FAMILIES["vp"][1], specs=toy.specs, costs=costs)
    state = gd.new_state()
    with torch.no_grad():  # as the samplers run it: only the branch that needs a graph gets one
        out = gd.step(x, t, 0.5, conds, state)
    got = (out.stats.nfe, rec.calls, out.stats.backward, out.stats.cost_evals)
    assert got == (nfe, calls, backward, evals)
    assert out.stats.forward_calls == len(calls)
    assert not out.denoise.requires_grad
    assert len(gd.plan_costs(0.5, gd.new_state())) == evals


def test_interval_and_scheduled_weights_switch_the_term_off_outside_the_window(batch):
    toy = GaussianMixtureToy(vp_alpha_sigma)
    x, t = batch
    conds = Conditions.from_raw(toy.specs, RAW, x.shape[0])
    exprs = [G.cfg("shape", 2) + G.cost("quad", 2, through_model=True).within(0.3, 0.6),
             G.cfg("shape", 2) + G.cost("quad", window(0.3, 0.6, 2.0), through_model=True),
             parse("cfg(shape, 2) + cost(quad, 2, through_model=true).within(0.3, 0.6)")]
    base = Guider(G.cfg("shape", 2), toy, native_space="eps", converter=FAMILIES["vp"][1], specs=toy.specs)
    for expr in exprs:
        gd = Guider(expr, toy, native_space="eps", converter=FAMILIES["vp"][1], specs=toy.specs,
                    costs={"quad": quadratic})
        for tau, active in [(0.1, False), (0.45, True), (0.9, False)]:
            out = gd.step(x, t, tau, conds, gd.new_state())
            ref = base.step(x, t, tau, conds, base.new_state()).denoise
            assert (out.stats.backward, out.stats.cost_evals) == ((1, 1) if active else (0, 0))
            assert torch.equal(out.denoise, ref) != active


def test_unknown_cost_fails_before_sampling_with_the_available_ones():
    toy = GaussianMixtureToy(flow_alpha_sigma)
    calls = []
    conds = Conditions.from_raw(toy.specs, {"shape": "square"}, 4)
    with pytest.raises(CostError, match=r"unknown cost 'trajectroy' — did you mean 'trajectory'\? "
                                        r"Available costs: quad, trajectory"):
        Flow().sample(lambda *a: calls.append(a), cond("shape") + G.cost("trajectroy", 1.0), conds, (2,),
                      steps=4, costs={"trajectory": quadratic, "quad": quadratic})
    assert not calls
    with pytest.raises(CostError, match="Available costs: \\(none\\)"):
        Flow().sample(toy, cond("shape") + G.cost("quad", 1.0), conds, (2,), steps=4)


def test_token_families_refuse_cost_terms_clearly():
    toy = CategoricalMixtureToy()
    conds = Conditions.from_raw(toy.specs, {"shape": "square"}, 2)
    with pytest.raises(SpaceError, match="only continuous families"):
        Masked(vocab_size=toy.vocab).sample(toy, cond("shape") + G.cost("quad", 1.0), conds, (8,), steps=4,
                                             costs={"quad": quadratic})


def test_a_cost_term_alone_is_a_direction_not_a_prediction():
    with pytest.raises(AffineError, match="sum to 0"):
        G.cost("quad", 1.0).check()
    (uncond() + G.cost("quad", 1.0)).check()


@pytest.mark.parametrize(("fn", "message"), [
    (lambda x0, c: x0.sum(), r"one value per sample, shape \(16,\); got \(\)"),
    (lambda x0, c: x0.detach().sum(-1), "does not depend differentiably on x0"),
    (lambda x0, c: x0.sum(-1) / 0.0 * 0.0, "non-finite"),
])
def test_a_bad_cost_is_named_in_the_error(batch, fn, message):
    toy = GaussianMixtureToy(vp_alpha_sigma)
    x, t = batch
    conds = Conditions.from_raw(toy.specs, RAW, x.shape[0])
    gd = Guider(cond("shape") + G.cost("bad", 1.0), toy, native_space="eps", converter=FAMILIES["vp"][1],
                specs=toy.specs, costs={"bad": fn})
    with pytest.raises(CostError, match=f"cost 'bad' .*{message}|{message}"):
        gd.step(x, t, 0.5, conds, gd.new_state())


def test_text_syntax_and_repr():
    e = parse("cfg(text, 3) + cost(trajectory, 2, through_model=true)")
    assert repr(e) == "uncond() + 3*(cond('text') - uncond()) + 2*cost('trajectory', through_model=True)"
    assert repr(parse("cond(text) + cost(trajectory, linear(0, 2), at=uncond)")) == \
        "cond('text') + linear(0, 2)*cost('trajectory', at=uncond())"
    assert repr(parse("uncond + cost(x, 1, through_model=False)")) == "uncond() + cost('x')"
    assert parse("cond(color=true)") == cond(color="true")  # a label value, not a flag


def test_the_branch_a_cost_reads_must_have_been_trained():
    from framework.core.conditions import ConditionError, ConditionSpec
    from framework.core.dropout import DropoutSpec

    specs = {n: ConditionSpec(n, labels=("a", "b")) for n in ("p", "q", "r")}
    # trained subsets: all kept, {q}, {p}, none; never {p, q} (r is never dropped alone)
    dropout = DropoutSpec({("p", "r"): 0.1, ("q", "r"): 0.1, ("p", "q", "r"): 0.1})
    expr = G.independent(["p", "q"], [2.0, 2.0])  # reads x̂0 of its reference cond(p, q): not a branch of it
    Guider(expr, lambda *a: None, native_space="eps", converter=FAMILIES["vp"][1], specs=specs,
           dropout=dropout, strict=True)  # fine without the cost term
    with pytest.raises(ConditionError, match=r"\{p, q\}"):
        Guider(expr + G.cost("quad", 1.0), lambda *a: None, native_space="eps", converter=FAMILIES["vp"][1],
               specs=specs, dropout=dropout, strict=True, costs={"quad": quadratic})


def test_two_branch_methods_refuse_an_expression_with_a_cost_term():
    with pytest.raises(ValueError, match="would drop"):
        G.apg(G.cfg("shape", 3) + G.cost("quad", 1.0))
    G.apg(G.cfg("shape", 3)) + G.cost("quad", 1.0)  # the cost outside the projection is fine
