"""Prediction spaces: affine guidance is the same in every space; non-affine ops are not."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from framework.core.conditions import Conditions, ConditionSpec
from framework.guidance import DiscreteSpaces, FlowSpaces, Guider, SpaceError, VPSpaces, cond, uncond
from framework.guidance import presets as G

SPECS = {n: ConditionSpec(n, labels=("a", "b")) for n in ("p", "q")}


def _vp(t):
    a = torch.cos(t * torch.pi / 2)
    return a, torch.sin(t * torch.pi / 2)


def _fixed_model(preds: dict):
    """Returns the prediction keyed by which conditions are present in each row."""

    def model(x, t, c):
        out = torch.empty_like(x)
        for i in range(x.shape[0]):
            key = tuple(n for n in ("p", "q") if bool(c.present[n][i]))
            out[i] = preds[key][i % preds[key].shape[0]]
        return out

    return model


@st.composite
def affine_expressions(draw):
    w1 = draw(st.floats(-3, 8, allow_nan=False))
    w2 = draw(st.floats(-3, 8, allow_nan=False))
    kind = draw(st.sampled_from(["independent", "nested", "mixture"]))
    if kind == "independent":
        return G.independent(["p", "q"], [w1, w2])
    if kind == "nested":
        return G.nested(["p", "q"], [w1, w2])
    lam = draw(st.floats(-2, 3, allow_nan=False))
    return lam * cond("p") + (1 - lam) * cond("p", "q") + w1 * (cond("q") - uncond())


SPACE_SETS = [(VPSpaces(_vp), ["eps", "x0", "v", "score"]), (FlowSpaces(), ["flow_v", "x0", "eps", "score"])]


@settings(max_examples=40, deadline=None)
@given(expr=affine_expressions(), seed=st.integers(0, 10_000), tval=st.floats(0.05, 0.95),
       family=st.sampled_from([0, 1]))
def test_affine_guidance_commutes_with_space_conversion(expr, seed, tval, family):
    conv, spaces = SPACE_SETS[family]
    gen = torch.Generator().manual_seed(seed)
    B = 3
    x = torch.randn(B, 5, generator=gen, dtype=torch.float64)
    t = torch.full((B,), tval, dtype=torch.float64)
    native = spaces[0]
    preds = {k: torch.randn(B, 5, generator=gen, dtype=torch.float64)
             for k in [(), ("p",), ("q",), ("p", "q")]}
    conds = Conditions.from_raw(SPECS, {"p": "a", "q": "b"}, B)
    ref = None
    for space in spaces:
        # convert the native predictions into `space` and let the model predict there directly
        preds_s = {k: conv.convert(v, native, space, x=x, t=t) for k, v in preds.items()}
        g = Guider(expr, _fixed_model(preds_s), native_space=space, converter=conv, specs=SPECS,
                   output_space=native)
        out = g.step(x, t, 0.5, conds, g.new_state()).denoise
        if ref is None:
            ref = out
        torch.testing.assert_close(out, ref, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize(("conv", "spaces"), SPACE_SETS)
def test_conversions_round_trip_and_directions_have_no_offset(conv, spaces):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    t = torch.rand(4, generator=gen, dtype=torch.float64) * 0.8 + 0.1
    p = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    for a in spaces:
        for b in spaces:
            back = conv.convert(conv.convert(p, a, b, x=x, t=t), b, a, x=x, t=t)
            torch.testing.assert_close(back, p)
            # a direction (difference of two predictions) converts like mass 0
            q = torch.randn(4, 6, generator=gen, dtype=torch.float64)
            d = conv.convert(p, a, b, x=x, t=t) - conv.convert(q, a, b, x=x, t=t)
            torch.testing.assert_close(conv.convert(p - q, a, b, x=x, t=t, mass=0.0), d)


def test_vp_conversions_match_the_forward_process():
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64).unbind(0)
    t = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    a, s = (v.view(-1, 1, 1) for v in _vp(t))
    x = a * x0 + s * eps
    conv = VPSpaces(_vp)
    torch.testing.assert_close(conv.convert(eps, "eps", "x0", x=x, t=t), x0)
    torch.testing.assert_close(conv.convert(x0, "x0", "v", x=x, t=t), a * eps - s * x0)
    torch.testing.assert_close(conv.convert(eps, "eps", "score", x=x, t=t), -eps / s)


def test_flow_conversions_match_the_interpolant():
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 3, 7, generator=gen, dtype=torch.float64).unbind(0)
    t = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    tt = t.view(-1, 1)
    x = (1 - tt) * x0 + tt * eps
    conv = FlowSpaces()
    torch.testing.assert_close(conv.convert(eps - x0, "flow_v", "x0", x=x, t=t), x0)
    torch.testing.assert_close(conv.convert(eps - x0, "flow_v", "eps", x=x, t=t), eps)


def test_non_affine_ops_depend_on_their_space():
    """APG in x0 differs from APG in eps (it must declare its space), while CFG does not."""
    gen = torch.Generator().manual_seed(0)
    B = 2
    x = torch.randn(B, 8, generator=gen, dtype=torch.float64)
    t = torch.full((B,), 0.4, dtype=torch.float64)
    preds = {k: torch.randn(B, 8, generator=gen, dtype=torch.float64) for k in [(), ("p",)]}
    conds = Conditions.from_raw(SPECS, {"p": "a"}, B)

    def run(expr):
        g = Guider(expr, _fixed_model(preds), native_space="eps", converter=VPSpaces(_vp), specs=SPECS)
        return g.step(x, t, 0.5, conds, g.new_state()).denoise

    assert (run(G.apg("p", 5.0, space="x0")) - run(G.apg("p", 5.0, space="eps"))).abs().max() > 1e-3
    assert (run(G.apg("p", 5.0, eta=1.0, momentum=0.0, space="x0")) - run(G.cfg("p", 5.0))).abs().max() < 1e-9


def test_logits_guidance_is_invariant_to_per_branch_constants():
    gen = torch.Generator().manual_seed(0)
    logits = {k: torch.randn(3, 11, generator=gen) for k in [(), ("p",)]}
    shifted = {(): logits[()] + 5.0, ("p",): logits[("p",)] - 2.0}
    conds = Conditions.from_raw(SPECS, {"p": "a"}, 3)
    outs = []
    for preds in (logits, shifted):
        g = Guider(G.cfg("p", 3.0), _fixed_model(preds), native_space="logits", converter=DiscreteSpaces(),
                   specs=SPECS, output_space="logprobs")
        outs.append(g.step(torch.zeros(3, 11), torch.zeros(3), 0.0, conds, g.new_state()).denoise)
    torch.testing.assert_close(outs[0], outs[1])


def test_an_unknown_space_is_a_clear_error():
    with pytest.raises(SpaceError, match=r"acts in 'x0' space.*available: \['logits', 'logprobs'\]"):
        Guider(G.apg("p", 5.0), _fixed_model({}), native_space="logits", converter=DiscreteSpaces(),
               specs=SPECS)
    with pytest.raises(SpaceError, match="'flow_v' is not one of"):
        Guider(G.cfg("p", 2.0), _fixed_model({}), native_space="flow_v", converter=VPSpaces(_vp), specs=SPECS)
