"""Guider.combine: another expression over a step's branch outputs equals that expression's own step,
on all rows or on a subset, and names a branch the step did not evaluate."""

import pytest
import torch

from framework.core.conditions import Conditions
from framework.guidance import FlowSpaces, Guider, parse


def _net(x, t, conditions, **_):
    """Deterministic and nonlinear in which conditions are present (``x``: ``[B, 3]``)."""
    a = conditions.present["a"].float().view(-1, 1) * (conditions.values["a"].float().view(-1, 1) + 1)
    b = conditions.present["b"].float().view(-1, 1) * 0.5
    return torch.sin(x * (1 + a) + t.view(-1, 1)) + b * x


def _guider(text: str) -> Guider:
    return Guider(parse(text), _net, native_space="flow_v", converter=FlowSpaces(), output_space="x0")


def test_combine_equals_the_other_expressions_step_on_any_rows():
    B = 6
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(B, 3, generator=g), torch.rand(B, generator=g) * 0.8 + 0.1
    conds = Conditions({"a": torch.randint(3, (B,), generator=g), "b": torch.randint(2, (B,), generator=g)})
    base = _guider("nested([a, b], [2.5, 3.0])")
    out = base.step(x, t, 0.0, conds, base.new_state())
    for text in ("nested([a, b], [1.0, 1.0])", "nested([a, b], [4.0, 0.5])", "cfg((a, b), 2)", "cond(a)"):
        other = _guider(text)
        expected = other.step(x, t, 0.0, conds, other.new_state()).denoise
        got = base.combine(parse(text), out, x, t, 0.0, conds, base.new_state())
        torch.testing.assert_close(got, expected)
        rows = torch.tensor([4, 1])
        part = base.combine(parse(text), out, x, t, 0.0, conds, base.new_state(), rows)
        torch.testing.assert_close(part, expected[rows])
    cond_a = base.combine(parse("cond(a)"), out, x, t, 0.0, conds, base.new_state())
    assert (out.denoise - cond_a).abs().max() > 1e-3  # the combinations really differ
    with pytest.raises(ValueError, match=r"cannot combine .*cond\('b'\) was not evaluated"):
        base.combine(parse("cfg(b, 2)"), out, x, t, 0.0, conds, base.new_state())
