"""The pass planner: exact NFE per preset, batching, de-duplication, networks, perturbations."""

import pytest
import torch

from framework.core.conditions import ConditionError, Conditions, ConditionSpec
from framework.core.dropout import DropoutSpec
from framework.guidance import (
    AffineError,
    AttnIdentity,
    Guider,
    Perturbations,
    VPSpaces,
    cond,
    linear,
    uncond,
    window,
)
from framework.guidance import presets as G

SPECS = {n: ConditionSpec(n, labels=("a", "b", "c", "d")) for n in ("shape", "color", "size")}
B = 4


class Recorder:
    """A small nonlinear conditional model that records every call it receives."""

    def __init__(self, seed: int = 0, bias: float = 0.0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.emb = {n: torch.randn(4, 3, generator=g) for n in SPECS}
        self.null = {n: torch.randn(3, generator=g) for n in SPECS}
        self.bias = bias
        self.calls: list[dict] = []

    def __call__(self, x, t, c: Conditions, perturbations: Perturbations | None = None):
        self.calls.append({"rows": x.shape[0], "t": t.clone(), "present": {k: v.clone() for k, v in
                           c.present.items()}, "perturbations": perturbations})
        h = x * 0.3 + 0.01 * t.view(-1, 1).float() + self.bias
        for n in SPECS:
            e = torch.where(c.present[n][:, None], self.emb[n][c.values[n]], self.null[n])
            h = h + torch.tanh(e * x)
        if perturbations is not None:
            for _p, rows in perturbations:
                h = torch.where(rows[:, None], h * 0.5, h)
        return h


def _run(expr, models, steps: int = 5, max_batch=None, raw=None):
    raw = raw or {"shape": "a", "color": "b", "size": "c"}
    g = Guider(expr, models, native_space="eps", converter=VPSpaces(
        lambda t: (torch.full(t.shape, 0.8), torch.full(t.shape, 0.6))), specs=SPECS, max_batch=max_batch)
    state = g.new_state(torch.Generator().manual_seed(0))
    conds = Conditions.from_raw(SPECS, raw, B)
    x = torch.randn(B, 3, generator=torch.Generator().manual_seed(1))
    outs = [g.step(x, torch.full((B,), 10.0), i / max(1, steps - 1), conds, state) for i in range(steps)]
    return outs, state


NFE = [  # (expression, branches per step at every step)
    (G.cfg("shape", 5.0), 2),
    (G.negative("shape", "color", "d", 3.0), 2),
    (G.independent(["shape", "color"], [2.0, 3.0]), 3),
    (G.independent(["shape", "color", "size"], [2.0, 3.0, 1.5]), 4),
    (G.nested(["shape", "color"], [2.0, 3.0]), 3),  # not 4: the (shape, ∅) branch is shared
    (G.nested(["shape", "color", "size"], [2.0, 3.0, 1.0]), 4),
    (G.joint(["shape", "color"], 3.0), 2),
    (G.double("shape", "color", 3.0, 2.0), 3),
    (G.icg("shape", 3.0), 2),
    (G.cads("shape", 3.0), 2),
    (G.apg("shape", 6.0, space="eps"), 2),
    (G.rescale(G.cfg("shape", 6.0), space="eps"), 2),
    (G.cfg_pp("shape", 0.6), 2),
    (G.pag(2.0, "shape"), 2),
    (G.pag(2.0, "shape", base=G.cfg("shape", 4.0)), 3),  # CFG + PAG share cond("shape")
    (G.seg(2.0, "shape"), 2),
    (G.skip_layers(2.0, [1], "shape"), 2),
    (G.tsg(2.0, 50.0, "shape"), 2),
    (cond("shape", "color"), 1),
    (G.cfg("shape", 1.0), 1),  # w = 1: the unconditional coefficient cancels to 0
    (G.cfg("shape", 0.0), 1),  # w = 0: only the unconditional branch
]


@pytest.mark.parametrize(("expr", "nfe"), NFE, ids=[repr(e)[:60] for e, _ in NFE])
def test_nfe_per_step_is_exact(expr, nfe):
    model = Recorder()
    outs, state = _run(expr, model)
    assert [o.stats.nfe for o in outs] == [nfe] * len(outs)
    assert all(o.stats.forward_calls == 1 for o in outs)  # one batched forward per step
    assert [c["rows"] for c in model.calls] == [nfe * B] * len(outs)
    assert state.nfe == nfe * len(outs)


def test_autoguidance_runs_one_forward_per_network():
    main, weak = Recorder(0), Recorder(1)
    outs, _ = _run(G.autoguidance("shape", 2.0) + 3.0 * (cond("shape") - uncond()),
                   {"main": main, "weak": weak}, steps=2)
    assert outs[0].stats.nfe == 3 and outs[0].stats.forward_calls == 2
    assert [c["rows"] for c in main.calls] == [2 * B] * 2 and [c["rows"] for c in weak.calls] == [B] * 2


def test_interval_evaluates_one_branch_outside_its_window():
    outs, _ = _run(G.interval("shape", 5.0, 0.3, 0.6), Recorder(), steps=11)
    taus = [o.stats.tau for o in outs]
    assert [o.stats.nfe for o in outs] == [2 if 0.3 <= tau <= 0.6 else 1 for tau in taus]


def test_within_falls_back_to_the_unguided_prediction():
    expr = G.independent(["shape", "color"], [3.0, 3.0]).within(0.5, 1.0)
    outs, _ = _run(expr, Recorder(), steps=5)
    assert [o.stats.nfe for o in outs] == [1, 1, 3, 3, 3]
    assert outs[0].stats.branches == ("cond('color', 'shape')",)


def test_zero_weight_window_drops_the_direction_and_its_branches():
    expr = uncond() + window(0.0, 0.4, 7.5) * (cond("shape") - uncond())
    outs, _ = _run(expr, Recorder(), steps=5)
    assert [o.stats.nfe for o in outs] == [2, 2, 1, 1, 1]


def test_adaptive_guidance_stops_evaluating_the_unconditional_branch():
    outs, _ = _run(G.adaptive(G.cfg("shape", 1.05), threshold=0.99), Recorder(), steps=6)
    nfe = [o.stats.nfe for o in outs]
    assert nfe[0] == 2 and nfe[-1] == 1 and nfe == sorted(nfe, reverse=True)
    # once switched, the output is exactly the conditional branch
    last = outs[-1]
    torch.testing.assert_close(last.denoise, last.preds[cond("shape")])


def test_adaptive_guidance_does_not_switch_when_guidance_matters():
    outs, _ = _run(G.adaptive(G.cfg("shape", 8.0), threshold=0.9999), Recorder(), steps=4)
    assert [o.stats.nfe for o in outs] == [2, 2, 2, 2]


def test_cfg_zero_star_spends_no_evaluations_during_zero_init():
    from framework.guidance import FlowSpaces

    g = Guider(G.cfg_zero_star("shape", 4.0, zero_init_steps=2), Recorder(), native_space="flow_v",
               converter=FlowSpaces(), specs=SPECS)
    state = g.new_state()
    conds = Conditions.from_raw(SPECS, {"shape": "a"}, B)
    outs = [g.step(torch.randn(B, 3), torch.full((B,), 0.7), i / 3, conds, state) for i in range(4)]
    assert [o.stats.nfe for o in outs] == [0, 0, 2, 2]
    assert torch.count_nonzero(outs[0].denoise) == 0


@pytest.mark.parametrize("expr", [G.nested(["shape", "color", "size"], [2.0, 3.0, 1.5]),
                                  G.pag(2.0, "shape", base=G.independent(["shape", "color"], [2.0, -1.0])),
                                  G.apg(G.cfg("shape", 7.0), space="eps", momentum=-0.5),
                                  G.tsg(1.5, 30.0, "color")])
@pytest.mark.parametrize("max_batch", [1, B, 3 * B - 1])
def test_batched_evaluation_equals_branch_by_branch(expr, max_batch):
    batched, _ = _run(expr, Recorder(), steps=3)
    model = Recorder()
    chunked, _ = _run(expr, model, steps=3, max_batch=max_batch)
    for a, b in zip(batched, chunked, strict=True):
        torch.testing.assert_close(a.denoise, b.denoise, rtol=1e-6, atol=1e-6)
    assert all(c["rows"] <= max_batch for c in model.calls)
    assert chunked[0].stats.forward_calls == -(-batched[0].stats.nfe * B // max_batch)


def test_batched_evaluation_equals_an_independent_loop():
    """Our batched result equals calling the model once per branch and combining by hand."""
    model = Recorder()
    outs, _ = _run(G.nested(["shape", "color"], [2.0, 3.0]), model, steps=1)
    conds = Conditions.from_raw(SPECS, {"shape": "a", "color": "b", "size": "c"}, B)
    x = torch.randn(B, 3, generator=torch.Generator().manual_seed(1))
    t = torch.full((B,), 10.0)

    def branch(*kept):
        present = {n: torch.full((B,), n in kept) for n in SPECS}
        return model(x, t, Conditions(dict(conds.values), present))

    u, s, sc = branch(), branch("shape"), branch("shape", "color")
    torch.testing.assert_close(outs[0].denoise, u + 2.0 * (s - u) + 3.0 * (sc - s), rtol=1e-6, atol=1e-6)


def test_branch_rows_carry_the_right_presence_masks():
    model = Recorder()
    _run(G.nested(["shape", "color"], [2.0, 3.0]), model, steps=1)
    present = model.calls[0]["present"]
    # branches are packed in a deterministic order; each row pattern appears in B rows
    patterns = {(bool(present["shape"][i]), bool(present["color"][i]), bool(present["size"][i]))
                for i in range(3 * B)}
    assert patterns == {(False, False, False), (True, False, False), (True, True, False)}


def test_perturbations_reach_only_the_perturbed_rows():
    model = Recorder()
    _run(G.pag(2.0, "shape", layers=[1, 2], base=G.cfg("shape", 3.0)), model, steps=1)
    p = model.calls[0]["perturbations"]
    assert p.table == (AttnIdentity((1, 2)),)
    assert int(p.rows(AttnIdentity((1, 2))).sum()) == B


def test_time_shift_is_applied_to_the_branch_rows():
    model = Recorder()
    _run(G.tsg(1.5, 40.0, "shape"), model, steps=1)
    t = model.calls[0]["t"]
    assert sorted(set(t.tolist())) == [10.0, 50.0] and int((t == 50.0).sum()) == B
    assert model.calls[0]["perturbations"] is None  # the engine handles time shifts itself


def test_icg_feeds_another_samples_condition():
    model = Recorder()
    raw = {"shape": ["a", "b", "c", "d"]}
    g = Guider(G.icg("shape", 3.0), model, native_space="eps", converter=VPSpaces(
        lambda t: (torch.full(t.shape, 0.8), torch.full(t.shape, 0.6))), specs=SPECS)
    seen = []
    orig = g._forward

    def spy(network, branches, x, t, tau, conditions, state, shuffle):
        seen.append(Conditions.cat([g._branch_conditions(b, conditions, tau, state, shuffle)
                                    for b in branches]))
        return orig(network, branches, x, t, tau, conditions, state, shuffle)

    g._forward = spy
    g.step(torch.randn(B, 3), torch.full((B,), 1.0), 0.0, Conditions.from_raw(SPECS, raw, B),
           g.new_state(torch.Generator().manual_seed(3)))
    values = seen[0].values["shape"].view(2, B)  # sorted: cond('shape') first, then independent
    assert torch.equal(values[0], torch.arange(4))
    assert not bool((values[1] == torch.arange(4)).any())  # a derangement
    assert sorted(values[1].tolist()) == [0, 1, 2, 3]


def test_icg_needs_two_samples_to_shuffle():
    g = Guider(G.icg("shape", 3.0), Recorder(), native_space="eps", converter=VPSpaces(
        lambda t: (torch.full(t.shape, 0.8), torch.full(t.shape, 0.6))), specs=SPECS)
    with pytest.raises(ConditionError, match="at least 2 samples"):
        g.step(torch.randn(1, 3), torch.ones(1), 0.0, Conditions.from_raw(SPECS, {"shape": "a"}, 1),
               g.new_state())


def test_apg_momentum_state_is_fresh_per_run():
    expr = G.apg("shape", 6.0, momentum=-0.7, space="eps")
    first, _ = _run(expr, Recorder(), steps=4)
    second, _ = _run(expr, Recorder(), steps=4)
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a.denoise, b.denoise)
    no_momentum, _ = _run(G.apg("shape", 6.0, momentum=0.0, space="eps"), Recorder(), steps=4)
    torch.testing.assert_close(first[0].denoise, no_momentum[0].denoise)  # no history yet
    assert (first[2].denoise - no_momentum[2].denoise).abs().max() > 1e-4


def test_linear_schedule_changes_the_weight_each_step():
    outs, _ = _run(uncond() + linear(1.0, 5.0) * (cond("shape") - uncond()), Recorder(), steps=3)
    ref, _ = _run(G.cfg("shape", 3.0), Recorder(), steps=3)
    torch.testing.assert_close(outs[1].denoise, ref[1].denoise)  # τ = 0.5 → w = 3
    assert (outs[0].denoise - ref[0].denoise).abs().max() > 1e-3


def test_stats_report_norm_and_cosine_against_the_unguided_prediction():
    outs, _ = _run(G.cfg("shape", 4.0), Recorder(), steps=1)
    s = outs[0].stats
    assert s.guidance_norm is not None and s.guidance_norm > 0 and -1.0 <= s.cosine <= 1.0
    diff = outs[0].denoise - outs[0].preds[cond("shape")]
    assert s.guidance_norm == pytest.approx(float(diff.norm(dim=1).mean()), rel=1e-5)


def test_adaptive_guidance_waits_until_after():
    early, _ = _run(G.adaptive(G.cfg("shape", 1.05), threshold=0.99), Recorder(), steps=6)
    late, _ = _run(G.adaptive(G.cfg("shape", 1.05), threshold=0.99, after=0.5), Recorder(), steps=6)
    assert [o.stats.nfe for o in early][1] == 1  # switched after the first step
    assert [o.stats.nfe for o in late] == [2, 2, 2, 2, 1, 1]  # τ = 0.6 is the first step that may switch


def test_icg_shuffles_every_independent_condition_with_one_permutation():
    model = Recorder()
    raw = {"shape": ["a", "b", "c", "d"], "color": ["d", "c", "b", "a"]}
    g = Guider(G.icg(("shape", "color"), 3.0), model, native_space="eps", converter=VPSpaces(
        lambda t: (torch.full(t.shape, 0.8), torch.full(t.shape, 0.6))), specs=SPECS)
    state = g.new_state(torch.Generator().manual_seed(5))
    seen = []
    orig = g._forward

    def spy(network, branches, x, t, tau, conditions, state, shuffle):
        out = orig(network, branches, x, t, tau, conditions, state, shuffle)
        seen.append(Conditions.cat([g._branch_conditions(b, conditions, tau, state, shuffle)
                                    for b in branches]))
        return out

    g._forward = spy
    for _ in range(3):
        g.step(torch.randn(B, 3), torch.full((B,), 1.0), 0.0, Conditions.from_raw(SPECS, raw, B), state)
    for c in seen:
        shape, color = c.values["shape"].view(2, B)[1], c.values["color"].view(2, B)[1]
        # both conditions come from the same other sample: the pairs stay those of the batch
        pairs = {(int(a), int(b)) for a, b in zip(shape, color, strict=True)}
        assert pairs == {(0, 3), (1, 2), (2, 1), (3, 0)}


def test_time_shift_is_clamped_to_the_schedule():
    """TSG's shifted time near the end of a 1000-step schedule stays a valid timestep."""
    alphas = torch.linspace(0.999, 0.01, 1000)
    seen = []

    def model(x, t, c):
        seen.append(t.clone())
        return x * alphas[t.long()].view(-1, 1)  # indexes the schedule, as real models do

    g = Guider(G.tsg(1.5, 50.0, "shape"), model, native_space="eps",
               converter=VPSpaces.from_alphas_cumprod(alphas), specs=SPECS)
    conds = Conditions.from_raw(SPECS, {"shape": "a"}, B)
    out = g.step(torch.randn(B, 3), torch.full((B,), 980), 0.0, conds, g.new_state())
    assert sorted(set(seen[0].tolist())) == [980, 999] and bool(torch.isfinite(out.denoise).all())


def test_weights_are_checked_at_every_step_not_only_at_probe_points():
    bump = lambda tau: 1.3 if 0.3 < tau < 0.4 else 1.0  # mass 1 at the probe τs
    g = Guider(bump * uncond(), Recorder(), native_space="eps", converter=VPSpaces(
        lambda t: (torch.full(t.shape, 0.8), torch.full(t.shape, 0.6))), specs=SPECS)
    conds, state = Conditions.from_raw(SPECS, {"shape": "a"}, B), g.new_state()
    g.step(torch.randn(B, 3), torch.ones(B), 0.25, conds, state)
    with pytest.raises(AffineError, match=r"τ=0\.35 they sum to 1\.3"):
        g.step(torch.randn(B, 3), torch.ones(B), 0.35, conds, state)


def test_dropout_check_needs_specs():
    with pytest.raises(ValueError, match="pass specs= together with dropout="):
        Guider(G.cfg("shape", 3.0), Recorder(), native_space="eps", converter=VPSpaces(
            lambda t: (torch.full(t.shape, 0.8), torch.full(t.shape, 0.6))),
            dropout=DropoutSpec({"shape": 0.1}))


@pytest.mark.parametrize("expr", [G.apg("shape", 6.0, momentum=-0.5, space="eps"),
                                  G.cfg_zero_star("shape", 4.0, zero_init_steps=1, space="eps")],
                         ids=["apg", "zero-star"])
def test_a_corrector_evaluation_shares_its_sampler_step(expr):
    """Heun's second stage neither advances the step counter nor the per-run state: evaluated at
    the predictor's own input it reproduces the predictor exactly."""
    g = Guider(expr, Recorder(), native_space="eps", converter=VPSpaces(
        lambda t: (torch.full(t.shape, 0.8), torch.full(t.shape, 0.6))), specs=SPECS)
    conds, state = Conditions.from_raw(SPECS, {"shape": "a"}, B), g.new_state()
    for i in range(3):
        x = torch.randn(B, 3, generator=torch.Generator().manual_seed(i))
        first = g.step(x, torch.ones(B), i / 2, conds, state)
        again = g.step(x, torch.ones(B), i / 2, conds, state, corrector=True)
        torch.testing.assert_close(again.denoise, first.denoise)
    assert state.step == 3 and len(state.history) == 3
    assert all(s.nfe == 2 * len(s.branches) for s in state.history)  # both evaluations counted
