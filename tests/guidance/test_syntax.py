"""The text syntax parses to the same expressions as the Python API, and fails clearly."""

import pytest

from framework.guidance import AttnIdentity, GuidanceSyntaxError, cond, parse, uncond
from framework.guidance import presets as G


@pytest.mark.parametrize(("text", "expected"), [
    ("uncond + 4*(cond(shape) - uncond) + 3*(cond(color) - uncond)",
     G.independent(["shape", "color"], [4, 3])),
    ("uncond() + 7.5 * (cond('text') - uncond())", G.cfg("text", 7.5)),
    ("cfg(text, 7.5)", G.cfg("text", 7.5)),
    ("nested([image, text], [1.5, 7.5])", G.nested(["image", "text"], [1.5, 7.5])),
    ("cond(color=red) + 3*(cond(color) - cond(color=red))", G.negative("color", "color", "red", 3)),
    ("cond(shape).on(weak) + 2*(cond(shape) - cond(shape).on(weak))", G.autoguidance("shape", 2)),
    ("cond(shape) + 2*(cond(shape) - cond(shape).perturbed(attn_identity(layers=[1, 2])))",
     cond("shape") + 2 * (cond("shape") - cond("shape").perturbed(AttnIdentity((1, 2))))),
    ("-1*(cond(a) - uncond) + cond(a)", -1 * (cond("a") - uncond()) + cond("a")),
    ("cond(text) + (cond(text) - uncond) / 2", cond("text") + (cond("text") - uncond()) / 2),
])
def test_text_parses_to_the_same_coefficients(text, expected):
    got = parse(text)
    for tau in (0.0, 0.5, 1.0):
        assert got.coefficients(tau) == pytest.approx(expected.coefficients(tau))


def test_schedules_windows_and_methods():
    e = parse("uncond + window(0.2, 0.8, 7.5)*(cond(text) - uncond)")
    assert e.coefficients(0.1) == {uncond(): 1.0}
    assert e.coefficients(0.5) == {uncond(): -6.5, cond("text"): 7.5}
    w = parse("apg(cfg(text, 9), eta=0, momentum=-0.5).within(0.2, 0.9)")
    assert w.coefficients(0.1) == {cond("text"): 1.0}
    assert w.branches() == {cond("text"), uncond()}
    lin = parse("uncond + linear(1, 5)*(cond(text) - uncond)")
    assert lin.coefficients(1.0) == {uncond(): -4.0, cond("text"): 5.0}


def test_condition_value_functions():
    icg = parse("cond(text=independent()) + 3*(cond(text) - cond(text=independent()))")
    assert icg.required_subsets() == {frozenset({"text"})}
    assert "independent('shuffle')" in repr(icg)


@pytest.mark.parametrize(("text", "message", "col"), [
    ("uncond + 4*(cond(shape) - uncond", "malformed guidance", None),
    ("uncond + 4*(shape - uncond)", "unknown name 'shape'", 12),
    ("uncond + 4*(cnd(shape) - uncond)", "unknown function 'cnd' — did you mean 'cond'?", 12),
    ("cond(text) ** 2", "unsupported operator '**' (Pow)", 11),
    ("__import__('os')", "names starting with '__' are not allowed", 0),
    ("cond(text).__class__", "attributes cannot be read ('__class__')", 11),
    ("cond(text).mro()", "unknown method .mro()", 11),
    ("cfg(text, 3).within(0.2, 1.5)", ".within(lo, hi) takes progress values in [0, 1], got 1.5", 25),
    ("cfg(text, 3).within(0.8, 0.2)", "needs lo ≤ hi, got lo=0.8 > hi=0.2", 25),
    ("cfg(text, 3) .  within(0.2)", "in .within(...)", 16),
    ("7.5", "evaluates to a number", 0),
    ("", "empty guidance expression", None),
    ("cond(text) + 2", "numbers only weight expressions", 11),
    ("nested([a, b], [1])", "in nested(...): 2 conditions", 0),
    ("uncond + 4*(cond(x) - uncond) + 3*cond(y)", "coefficients summing to 1", None),
])
@pytest.mark.fault("guidance syntax")
def test_malformed_text_gets_a_pointed_error(text, message, col):
    with pytest.raises((GuidanceSyntaxError, ValueError)) as info:
        parse(text).check()
    assert message in str(info.value)
    if col is not None and isinstance(info.value, GuidanceSyntaxError):
        assert info.value.col == col
        assert str(info.value).splitlines()[-1] == "  " + " " * col + "^"
