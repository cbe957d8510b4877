"""-inf logits (excluded tokens, constrained decoding) under guidance.

Oracles: transformers' CFG logits processors where their answer is defined, and a
hand-computed product of experts ``p̃ ∝ Π p_i^{c_i}`` with the convention that a token a
positively weighted branch excludes stays excluded.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers.generation.logits_process import (
    ClassifierFreeGuidanceLogitsProcessor,
    SuppressTokensLogitsProcessor,
    UnbatchedClassifierFreeGuidanceLogitsProcessor,
)

from framework.core.conditions import Conditions, ConditionSpec
from framework.guidance import DiscreteSpaces, FlowSpaces, Guider, Renormalize
from framework.guidance import presets as G

SPECS = {"a": ConditionSpec("a", labels=("x",)), "b": ConditionSpec("b", labels=("y",))}
NEG_INF = -math.inf


def _guided(expr, logits: dict[frozenset, torch.Tensor], output_space="logprobs", converter=None,
            native="logits"):
    """One guided step of a fake network whose output depends only on which conditions a branch keeps."""
    B = next(iter(logits.values())).shape[0]

    def model(x, t, c):
        n = x.shape[0] // B
        rows = []
        for k in range(n):
            keep = frozenset(name for name in SPECS if bool(c.present[name][k * B]))
            rows.append(logits[keep])
        return torch.cat(rows)

    g = Guider(expr, model, native_space=native, converter=converter or DiscreteSpaces(), specs=SPECS,
               output_space=output_space)
    conds = Conditions.from_raw(SPECS, {"a": "x", "b": "y"}, B)
    return g.step(torch.zeros(B, 1), torch.full((B,), 0.5), 0.0, conds, g.new_state())


def _random(shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


A, AB, U = frozenset({"a"}), frozenset({"a", "b"}), frozenset()


@pytest.mark.parametrize("w", [1.5, 3.0, 7.0])
def test_a_mask_every_branch_shares_equals_masking_after_transformers_cfg(w):
    """generate() applies constraints (suppress_tokens) after the CFG processor: same distribution."""
    c, u = _random((4, 50), 0), _random((4, 50), 1)
    banned = [3, 7, 8, 21, 49]
    mask = torch.zeros(50, dtype=torch.bool)
    mask[banned] = True
    masked = {A: c.masked_fill(mask, NEG_INF), U: u.masked_fill(mask, NEG_INF)}
    ours = _guided(Renormalize(G.cfg("a", w)), masked)
    theirs = ClassifierFreeGuidanceLogitsProcessor(w)(torch.zeros(4, 2, dtype=torch.long), torch.cat([c, u]))
    theirs = SuppressTokensLogitsProcessor(banned)(torch.zeros(4, 2, dtype=torch.long), theirs)
    torch.testing.assert_close(ours.denoise, torch.log_softmax(theirs, -1))
    assert torch.isneginf(ours.denoise[:, banned]).all() and torch.isfinite(ours.denoise[:, ~mask]).all()
    # the processor itself cannot take the masked logits: -inf - (-inf) is NaN
    raw = ClassifierFreeGuidanceLogitsProcessor(w)(torch.zeros(4, 2, dtype=torch.long),
                                                   torch.cat([c, u]).masked_fill(mask, NEG_INF))
    assert torch.isnan(raw[:, banned]).all()
    assert ours.stats.guidance_norm is not None and math.isfinite(ours.stats.guidance_norm)


@pytest.mark.parametrize("w", [1.5, 3.0])
def test_a_token_only_the_conditional_branch_excludes_matches_the_unbatched_processor(w):
    """uncond finite, cond -inf: the processor's answer is -inf there; ours too, and equal elsewhere."""
    c, u = _random((3, 40), 2), _random((3, 40), 3)
    c[0, 5] = c[2, [0, 9]] = NEG_INF
    ours = _guided(G.cfg("a", w), {A: c, U: u}).denoise
    lsm_c, lsm_u = torch.log_softmax(c, -1), torch.log_softmax(u, -1)
    theirs = UnbatchedClassifierFreeGuidanceLogitsProcessor(w, model=None, unconditional_ids=None)
    theirs.get_unconditional_logits = lambda input_ids: u[:, None]  # the model's logits, given
    theirs = theirs(torch.zeros(3, 2, dtype=torch.long), c)
    assert torch.equal(torch.isneginf(ours), torch.isneginf(c))
    assert torch.equal(torch.isneginf(theirs), torch.isneginf(c))
    finite = ~torch.isneginf(c)
    torch.testing.assert_close(ours[finite], theirs[finite], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[finite], (w * lsm_c + (1 - w) * lsm_u)[finite], rtol=1e-5, atol=1e-5)


def _oracle(coefs: dict[frozenset, float], logits: dict[frozenset, torch.Tensor]) -> torch.Tensor:
    """Hand-computed per token: log Π p_i^{c_i} (unnormalised), -inf if any c_i > 0 has p_i = 0."""
    logp = {k: torch.log_softmax(v.double(), -1) for k, v in logits.items()}
    B, V = next(iter(logits.values())).shape
    out = torch.empty(B, V, dtype=torch.float64)
    for r in range(B):
        for v in range(V):
            if any(c > 0 and math.isinf(logp[k][r, v]) for k, c in coefs.items()):
                out[r, v] = NEG_INF
            else:
                out[r, v] = sum(c * float(logp[k][r, v]) for k, c in coefs.items())
    return out


@pytest.mark.parametrize(("expr", "coefs"), [
    (G.cfg("a", 0.5), {A: 0.5, U: 0.5}),  # interpolation: every coefficient positive
    (G.cfg("a", 3.0), {A: 3.0, U: -2.0}),
    (G.nested(["a", "b"], [2.0, 4.0]), {U: -1.0, A: -2.0, AB: 4.0}),
    (G.independent(["a", "b"], [3.0, 3.0]), {U: -5.0, A: 3.0, frozenset({"b"}): 3.0}),
], ids=["cfg0.5", "cfg3", "nested", "independent"])
def test_exclusions_follow_the_product_of_experts(expr, coefs):
    """Masks differ per branch; a subtracted branch only excludes what a positive one excludes too."""
    gen = torch.Generator().manual_seed(4)
    logits = {k: _random((3, 16), i + 10) for i, k in enumerate(coefs)}
    positive = [k for k, c in coefs.items() if c > 0]
    union = torch.zeros(3, 16, dtype=torch.bool)
    for k in positive:
        m = torch.rand(3, 16, generator=gen) < 0.25
        m[:, 0] = False  # something is always left
        logits[k] = logits[k].masked_fill(m, NEG_INF)
        union |= m
    for k, c in coefs.items():
        if c < 0:
            logits[k] = logits[k].masked_fill(union & (torch.rand(3, 16, generator=gen) < 0.6), NEG_INF)
    out = _guided(expr, logits).denoise.double()
    expected = _oracle(coefs, logits)
    assert torch.equal(torch.isneginf(out), torch.isneginf(expected)) and bool(torch.isneginf(out).any())
    finite = torch.isfinite(expected)
    torch.testing.assert_close(out[finite], expected[finite], rtol=1e-5, atol=1e-5)


def test_at_w1_the_unconditional_branch_is_not_evaluated_so_its_mask_is_irrelevant():
    c, u = _random((2, 10), 5), _random((2, 10), 6)
    u[:, 4] = NEG_INF  # only the (unevaluated) unconditional branch excludes token 4
    c[:, 2] = NEG_INF
    out = _guided(G.cfg("a", 1.0), {A: c, U: u})
    assert out.stats.nfe == 1
    assert torch.isneginf(out.denoise[:, 2]).all() and torch.isfinite(out.denoise[:, 4]).all()


def _subtracted_only():
    c, u = _random((2, 12), 7), _random((2, 12), 8)
    u[1, 7] = NEG_INF
    message = r"branch uncond\(\) has coefficient -2 and marks token 7 -inf \(at index \(1, 7\)\)"
    return G.cfg("a", 3.0), {A: c, U: u}, message


def _nan():
    c, u = _random((2, 12), 7), _random((2, 12), 8)
    c[0, 3] = math.nan
    return G.cfg("a", 3.0), {A: c, U: u}, r"cond\('a'\) returned NaN \(first at index \(0, 3\)\)"


def _pos_inf():
    c, u = _random((2, 12), 7), _random((2, 12), 8)
    u[1, 2] = math.inf
    return G.cfg("a", 3.0), {A: c, U: u}, r"uncond\(\) returned \+inf \(first at index \(1, 2\)\)"


def _all_excluded():
    c, u = _random((2, 12), 7), _random((2, 12), 8)
    c[1] = NEG_INF
    return G.cfg("a", 3.0), {A: c, U: u}, r"branch cond\('a'\) marks every token -inf at index \(1,\)"


def _branch_excludes_all():
    c, u = _random((1, 4), 7), _random((1, 4), 8)
    c[0] = NEG_INF
    return G.cfg("a", 0.5), {A: c, U: u}, r"marks every token -inf"


def _disjoint_interpolation():
    c, u = _random((1, 4), 7), _random((1, 4), 8)
    c[0, :2] = NEG_INF
    u[0, 2:] = NEG_INF  # with w = 0.5 both are positive: their exclusions add up to everything
    message = r"the guided prediction of .* marks every token -inf at index \(0,\)"
    return G.cfg("a", 0.5), {A: c, U: u}, message


@pytest.mark.fault("logits")
@pytest.mark.parametrize("case", [_subtracted_only, _nan, _pos_inf, _all_excluded, _branch_excludes_all,
                                  _disjoint_interpolation],
                         ids=["-inf only where subtracted", "NaN", "+inf", "a row all -inf",
                              "branch excludes all", "exclusions cover the row"])
def test_undefined_logits_are_errors_naming_the_branch(case):
    expr, logits, message = case()
    with pytest.raises(FloatingPointError, match=message):
        _guided(expr, logits)


@pytest.mark.fault("logits")
def test_transformers_returns_nan_where_we_refuse():
    """The case we refuse (-inf only in the subtracted branch) is NaN in transformers' processor."""
    c, u = _random((1, 6), 9), _random((1, 6), 10)
    u[0, 1] = NEG_INF
    out = ClassifierFreeGuidanceLogitsProcessor(3.0)(torch.zeros(1, 1, dtype=torch.long), torch.cat([c, u]))
    assert torch.isnan(out[0, 1])
    with pytest.raises(FloatingPointError, match="forcing a token that branch forbids"):
        _guided(G.cfg("a", 3.0), {A: c, U: u})


@pytest.mark.fault("logits")
def test_minus_inf_in_a_continuous_space_is_an_error_naming_the_branch():
    c, u = _random((2, 3), 11), _random((2, 3), 12)
    c[1, 0] = NEG_INF
    with pytest.raises(FloatingPointError, match=r"cond\('a'\) returned -inf .* legal only in logit"):
        _guided(G.cfg("a", 2.0), {A: c, U: u}, output_space="flow_v", converter=FlowSpaces(), native="flow_v")


def test_renormalized_and_adaptive_guidance_keep_exclusions():
    c, u = _random((2, 8), 13), _random((2, 8), 14)
    c[:, 1] = u[:, 1] = NEG_INF
    out = _guided(G.adaptive(Renormalize(G.cfg("a", 2.0)), threshold=0.5), {A: c, U: u})
    assert torch.isneginf(out.denoise[:, 1]).all()
    assert torch.isfinite(out.denoise[:, [0, *range(2, 8)]]).all()
    assert math.isfinite(out.stats.extras["adaptive_cosine"])
    assert torch.exp(out.denoise).sum(-1).sub(1).abs().max() < 1e-5
