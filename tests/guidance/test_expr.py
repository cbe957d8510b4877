"""The expression algebra: coefficients, mass, subsets, references and error messages."""

import pytest
import torch

from framework.core.conditions import ConditionError, Conditions, ConditionSpec
from framework.guidance import (
    AffineError,
    AttnIdentity,
    Guider,
    Project,
    VPSpaces,
    cond,
    independent,
    linear,
    uncond,
)
from framework.guidance import presets as G

SPECS = {n: ConditionSpec(n, labels=("a", "b")) for n in ("image", "text")}


def test_cfg_coefficients_sum_to_one():
    e = uncond() + 7.5 * (cond("text") - uncond())
    assert e.coefficients() == {uncond(): -6.5, cond("text"): 7.5}
    assert e.mass() == 1.0


def test_nested_two_conditions_has_three_branches_with_shared_prefix():
    e = G.nested(["image", "text"], [1.5, 7.5])
    assert e.branches() == {uncond(), cond("image"), cond("image", "text")}
    assert e.coefficients() == pytest.approx({uncond(): -0.5, cond("image"): -6.0,
                                              cond("image", "text"): 7.5})


def test_branches_are_hashable_and_order_free():
    assert cond("text", "image") == cond("image", "text")
    assert len({cond("a"), cond("a"), cond("a").on("weak"), cond("a").perturbed(AttnIdentity())}) == 3
    assert cond(text="blurry") == cond(text="blurry") != cond(text="sharp")
    tensor = torch.zeros(3)
    assert cond(text=tensor) == cond(text=tensor) != cond(text=torch.zeros(3))  # tensors by identity


def test_schedule_weights_make_tau_dependent_coefficients():
    e = uncond() + linear(1.0, 5.0) * (cond("text") - uncond())
    assert e.coefficients(0.0) == {cond("text"): 1.0}  # w(0) = 1 cancels the unconditional term
    assert e.coefficients(1.0) == {uncond(): -4.0, cond("text"): 5.0}
    assert e.mass(0.3) == pytest.approx(1.0)


@pytest.mark.parametrize(("expr", "subsets"), [
    (G.cfg("text", 3.0), [set(), {"text"}]),
    (G.independent(["image", "text"], [1, 2]), [set(), {"image"}, {"text"}]),
    (G.nested(["image", "text"], [1, 2]), [set(), {"image"}, {"image", "text"}]),
    (G.nested(["text", "image"], [1, 2]), [set(), {"text"}, {"image", "text"}]),
    (G.joint(["image", "text"], 3.0), [set(), {"image", "text"}]),
    (G.autoguidance("text", 2.0), [{"text"}]),  # the weak network's branch is not main's business
    (G.icg("text", 2.0), [{"text"}]),  # an independent condition is present, not dropped
    (G.pag(2.0, "text"), [{"text"}]),
])
def test_required_subsets(expr, subsets):
    assert expr.required_subsets() == {frozenset(s) for s in subsets}


def test_reference_is_the_unguided_prediction():
    assert G.nested(["image", "text"], [2, 3]).reference() == cond("image", "text")
    assert G.negative("text", "text", "bad", 3.0).reference() == cond("text")
    assert G.pag(2.0, "text").reference() == cond("text")
    # CADS anneals the condition with or without guidance: the reference stays noised
    cads = G.cads("text", 5.0)
    assert cads.reference() in cads.branches() and cads.reference().names == {"text"}
    assert cads.reference() != cond("text")
    # an independent (ICG) value is not the sample's own condition
    assert G.icg("text", 2.0).reference() == cond("text")


def test_non_affine_expression_is_rejected_with_its_coefficients():
    with pytest.raises(AffineError, match=r"sum to 7.5 .*did you forget the base term"):
        Guider(7.5 * cond("text"), lambda x, t, c: x, native_space="eps",
               converter=VPSpaces(lambda t: (t, t)), specs=SPECS)
    expected = r"at τ=0.25 they sum to 1.25 \(cond\('text'\): \+1, cond\('image'\): \+0.25\)"
    with pytest.raises(AffineError, match=expected):
        (cond("text") + linear(0.0, 1.0) * cond("image")).check()


def test_projection_requires_a_direction():
    with pytest.raises(AffineError, match="a direction must have coefficients summing to 0"):
        Project(cond("text"), cond("text"))


@pytest.mark.parametrize(("bad", "message"), [
    (lambda: cond("text") + 1.0, "numbers only weight expressions"),
    (lambda: cond("text") * cond("image"), "cannot multiply two guidance expressions"),
    (lambda: cond("text") / 0, "non-zero number"),
    (lambda: cond("text", text="x"), "both kept and assigned"),
    (lambda: G.nested(["image", "text"], [1.0]), r"2 conditions \['image', 'text'\] but 1 weights"),
    (lambda: G.cfg_pp("text", 2.0), r"λ in \[0, 1\]"),
    (lambda: G.apg(G.independent(["image", "text"], [1, 2])), "expected a two-branch guidance"),
    (lambda: G.cfg("text", float("nan")), "must be finite"),
    (lambda: independent("random"), "'shuffle' or 'prior'"),
])
def test_bad_constructions_get_clear_errors(bad, message):
    with pytest.raises((TypeError, ValueError), match=message):
        bad()


def _guider(expr, models=None, specs=SPECS):
    models = models or (lambda x, t, c: x)
    return Guider(expr, models, native_space="eps", converter=VPSpaces(
        lambda t: (torch.full(t.shape, 0.8), torch.full(t.shape, 0.6))), specs=specs)


def test_unknown_condition_name_is_named_with_a_suggestion():
    with pytest.raises(ConditionError, match=r"unknown condition in branch cond\('txet'\): 'txet' "
                                             r"— did you mean 'text'\? Valid: image, text"):
        _guider(G.cfg("txet", 3.0))


def test_unknown_condition_without_specs_is_caught_at_the_first_step():
    g = Guider(G.cfg("colour", 3.0), lambda x, t, c: x, native_space="eps",
               converter=VPSpaces(lambda t: (t, t)))
    conds = Conditions({"color": torch.zeros(2, dtype=torch.long)})
    with pytest.raises(ConditionError, match="'colour' — did you mean 'color'"):
        g.step(torch.zeros(2, 3), torch.ones(2), 0.0, conds, g.new_state())


def test_unknown_network_is_named():
    with pytest.raises(ValueError, match=r"runs on network 'weak', but only \['main'\] were given"):
        _guider(G.autoguidance("text", 2.0))


def test_bad_replacement_value_lists_valid_labels():
    g = _guider(G.negative("text", "text", "c", 2.0))
    with pytest.raises(ConditionError, match=r"unknown value for condition 'text': 'c' Valid: a, b"):
        g.step(torch.zeros(2, 3), torch.ones(2), 0.0, Conditions.from_raw(SPECS, {"text": "a"}, 2),
               g.new_state())


def test_a_model_without_perturbation_support_is_named():
    g = _guider(G.pag(2.0, "text"))
    with pytest.raises(TypeError, match=r"network 'main' does not accept perturbations.*perturbed"):
        g.step(torch.zeros(2, 3), torch.ones(2), 0.0, Conditions.from_raw(SPECS, {"text": "a"}, 2),
               g.new_state())


def test_non_finite_outputs_name_the_branch():
    def model(x, t, c):
        out = x.clone()
        out[~c.present["text"]] = float("nan")
        return out

    g = _guider(G.cfg("text", 2.0), model)
    with pytest.raises(FloatingPointError, match=r"non-finite branch outputs: uncond\(\)"):
        g.step(torch.zeros(2, 3), torch.ones(2), 0.0, Conditions.from_raw(SPECS, {"text": "a"}, 2),
               g.new_state())


def test_model_returning_wrong_rows_is_named():
    g = _guider(G.cfg("text", 2.0), lambda x, t, c: x[:1])
    with pytest.raises(ValueError, match=r"returned 1 rows for a batch of 4"):
        g.step(torch.zeros(2, 3), torch.ones(2), 0.0, Conditions.from_raw(SPECS, {"text": "a"}, 2),
               g.new_state())


def test_cfg_pp_must_be_the_whole_expression():
    with pytest.raises(ValueError, match="must be the whole guidance expression"):
        _guider(G.cfg_pp("text", 0.5) + 1.0 * (cond("text") - uncond()))


def test_repr_reads_like_the_maths():
    assert repr(G.nested(["image", "text"], [1.5, 7.5])) == (
        "uncond() + 1.5*(cond('image') - uncond()) + 7.5*(cond('image', 'text') - cond('image'))")
    assert repr(cond("image", text="blurry").on("weak")) == "cond('image', text='blurry').on('weak')"
