"""Per-sample adaptive guidance: rows leave the extra branches on their own, the batch is
compacted for those branches, and row-level NFE counts what was evaluated."""

import pytest
import torch

from framework.core.conditions import Conditions, ConditionSpec
from framework.generators import Autoregressive, Diffusion, Flow, Masked
from framework.guidance import DiscreteSpaces, Guider, VPSpaces, cond, uncond
from framework.guidance import presets as G
from framework.guidance.spaces import SpaceError
from framework.toy.model import CategoricalMixtureToy, GaussianMixtureToy, ToyLM, flow_alpha_sigma

SPECS = {"shape": ConditionSpec("shape", labels=("a", "b", "c", "d"))}
W = 3.0


class Oracle:
    """Row ``i`` (its id is ``x[i, 0]``) has guidance direction ``1`` before step ``leave[i]`` and
    exactly ``0`` from then on: ``cond − uncond = d_i(t)·e``. The step is passed as ``t``. Records
    the batch rows every call sees."""

    def __init__(self, leave: list[int], width: int = 3) -> None:
        self.leave = torch.tensor(leave)
        self.width = width
        self.calls: list[list[tuple[int, bool]]] = []  # per call: (row id, shape present)

    def direction(self, rows: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """``[R]`` the size of row ``rows[i]``'s guidance direction at ``step[i]``."""
        return (step < self.leave[rows]).float()

    def __call__(self, x, t, c: Conditions):
        ids = x[..., 0].reshape(x.shape[0], -1)[:, 0].round().long() if x.is_floating_point() else None
        rows = ids if ids is not None else x[:, 0]
        present = c.present["shape"]
        self.calls.append(list(zip(rows.tolist(), present.tolist(), strict=True)))
        d = self.direction(rows, t.long())
        base = torch.sin(torch.arange(self.width, dtype=torch.float32) + rows[:, None].float())
        return base + 0.5 + (present.float() * d)[:, None] * torch.linspace(0.5, 1.5, self.width)


def _run(expr, model, leave, steps, space="eps"):
    B = len(leave)
    conv = (DiscreteSpaces() if space == "logits" else
            VPSpaces(lambda t: (torch.full(t.shape, 0.8), torch.full(t.shape, 0.6))))
    g = Guider(expr, model, native_space=space, converter=conv, specs=SPECS)
    state = g.new_state()
    conds = Conditions.from_raw(SPECS, {"shape": "b"}, B)
    x = torch.arange(B, dtype=torch.float32)[:, None].repeat(1, 3)
    if space == "logits":
        x = torch.arange(B)[:, None].repeat(1, 3)
    outs = [g.step(x, torch.full((B,), float(i)), i / (steps - 1), conds, state) for i in range(steps)]
    return outs, state


@pytest.mark.parametrize("space", ["eps", "logits"])
def test_rows_leave_at_their_own_step_and_are_compacted_out(space):
    leave = [1, 4, 2, 6]  # row i's guidance direction vanishes from step leave[i]
    steps = 8
    expr = G.adaptive(G.cfg("shape", W), threshold=0.9999)
    model = Oracle(leave)
    outs, state = _run(expr, model, leave, steps, space)
    # row i has cosine 1 at step leave[i], so it stops costing the uncond branch from the next step
    uncond_rows = [sorted(r for r, p in call if not p) for call in model.calls]
    for step, rows in enumerate(uncond_rows):
        assert rows == [i for i, s in enumerate(leave) if s >= step], (step, rows)
    expected = [len(leave) + sum(s >= i for s in leave) for i in range(steps)]
    assert [o.stats.row_evals for o in outs] == expected
    assert state.nfe_rows == pytest.approx(sum(expected) / len(leave))
    # the guided value of every row is CFG while guided and the conditional branch after
    for i, o in enumerate(outs):
        c = o.preds[cond("shape")]
        u = o.preds.get(uncond(), torch.full_like(c, float("nan")))  # absent once every row left
        for r, s in enumerate(leave):
            want = c[r] if s < i else u[r] + W * (c[r] - u[r])
            torch.testing.assert_close(o.denoise[r], want, rtol=0, atol=1e-6)
            if s < i:  # an unevaluated row is NaN, never a stale or zero value
                assert bool(torch.isnan(u[r]).all())


def test_per_batch_keeps_every_row_until_the_last_leaves_and_gives_the_same_values():
    leave, steps = [1, 4, 2, 6], 8
    per_row, _ = _run(G.adaptive(G.cfg("shape", W), threshold=0.9999), Oracle(leave), leave, steps)
    batch, _ = _run(G.adaptive(G.cfg("shape", W), threshold=0.9999, per_sample=False),
                    Oracle(leave), leave, steps)
    for a, b in zip(per_row, batch, strict=True):  # d = 0 exactly once a row has left: same values
        torch.testing.assert_close(a.denoise, b.denoise, rtol=0, atol=1e-6)
    assert [o.stats.row_evals for o in batch] == [8] * 7 + [4]  # all 4 rows until the last left
    assert sum(o.stats.row_evals for o in per_row) < sum(o.stats.row_evals for o in batch)


@pytest.mark.parametrize("threshold", [-1.0, 0.9999, 1.0])
def test_identical_to_the_batch_version_when_rows_converge_together(threshold):
    leave, steps = [3, 3, 3, 3], 6  # every row leaves at the same step (or all at once, or never)
    a, _ = _run(G.adaptive(G.cfg("shape", W), threshold=threshold), Oracle(leave), leave, steps)
    b, _ = _run(G.adaptive(G.cfg("shape", W), threshold=threshold, per_sample=False), Oracle(leave),
                leave, steps)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.denoise, y.denoise)
        assert (x.stats.nfe, x.stats.row_evals) == (y.stats.nfe, y.stats.row_evals)


def test_a_branch_needed_elsewhere_on_the_whole_batch_is_not_compacted():
    leave, steps = [0, 5, 5, 5], 4
    expr = G.adaptive(G.cfg("shape", W), threshold=0.9999) + 0.5 * (uncond() - uncond().on("weak"))
    main, weak = Oracle(leave), Oracle(leave)
    _run(expr, {"main": main, "weak": weak}, leave, steps)
    assert all(sorted(r for r, p in call if not p) == [0, 1, 2, 3] for call in main.calls)


def test_stateful_inner_guidance_is_refused_per_sample():
    with pytest.raises(ValueError, match="APG momentum"):
        G.adaptive(G.apg("shape", 5.0, momentum=-0.5))
    G.adaptive(G.apg("shape", 5.0, momentum=-0.5), per_sample=False)  # the batch policy can


class Blinking(Oracle):
    """Row ``i``'s guidance direction is 1, except ``0`` at the steps in ``zeros[i]``."""

    def __init__(self, zeros: list[set[int]]) -> None:
        super().__init__([0] * len(zeros))
        self.zeros = zeros

    def direction(self, rows, step):
        return torch.tensor([0.0 if int(s) in self.zeros[int(r)] else 1.0
                             for r, s in zip(rows, step, strict=True)])


def _leave_step(zeros: set[int], k: int, steps: int) -> int:
    """Oracle for hysteresis: the first step ending ``k`` consecutive zero-direction steps."""
    return next((s for s in range(steps) if all(j in zeros for j in range(s - k + 1, s + 1))), steps)


@pytest.mark.parametrize("patience", [1, 2, 3])
def test_patience_waits_for_consecutive_converged_steps(patience):
    """A row whose guidance vanishes at one step and comes back (a noisy crossing) leaves only
    after ``patience`` consecutive converged steps; until then it is guided as CFG."""
    zeros = [{1, 3, 4, 5}, {2, 4, 5}, {0, 2, 4, 6}, {3, 4, 5, 6, 7}]
    steps = 8
    model = Blinking(zeros)
    outs, _ = _run(G.adaptive(G.cfg("shape", W), threshold=0.9999, patience=patience), model, zeros, steps)
    leave = [_leave_step(z, patience, steps) for z in zeros]
    uncond_rows = [sorted(r for r, p in call if not p) for call in model.calls]
    assert uncond_rows == [[i for i, s in enumerate(leave) if s >= step] for step in range(steps)]
    for i, o in enumerate(outs):  # guided (CFG) on every step up to and including the leaving step
        c, u = o.preds[cond("shape")], o.preds.get(uncond())
        for r, s in enumerate(leave):
            want = c[r] if s < i else u[r] + W * (c[r] - u[r])
            torch.testing.assert_close(o.denoise[r], want, rtol=0, atol=1e-6)


def test_patience_per_batch_counts_steps_at_which_every_row_agreed():
    zeros = [{1, 2, 3, 5, 6}, {2, 3, 5, 6}, {0, 2, 3, 5, 6}]
    steps = 8
    for k, switch in ((1, 2), (2, 3), (3, 8)):  # all rows converge at steps 2, 3, 5, 6
        outs, _ = _run(G.adaptive(G.cfg("shape", W), threshold=0.9999, per_sample=False, patience=k),
                       Blinking(zeros), zeros, steps)
        assert [o.stats.row_evals for o in outs] == [6 if i <= switch else 3 for i in range(steps)], k


class Tokens(Oracle):
    """Logits over 6 tokens. Before step ``leave[i]`` guidance raises the likely token 1 by 1
    (``c − u = e_1``): the next-token probabilities change, yet the logit vector, dominated by its
    ``−30`` entries, has cosine 0.99927. From then on it lowers the unlikely token 5 by 20
    (``c − u = −20·e_5``): the probabilities do not change, the logit cosine drops to ≈ 0.96."""

    def __call__(self, x, t, c: Conditions):
        rows, present = x[:, 0], c.present["shape"]
        self.calls.append(list(zip(rows.tolist(), present.tolist(), strict=True)))
        before = (t.long() < self.leave[rows]).float()
        d = torch.zeros(len(rows), 6)
        d[:, 1], d[:, 5] = before, -20.0 * (1 - before)
        return torch.tensor([4.0, 2.0, 0.0, -30.0, -30.0, -30.0]) + present.float()[:, None] * d


def test_probs_measure_sees_what_the_logit_cosine_misses():
    leave, steps = [1, 4, 2, 6], 8
    for measure, gone in (("value", [0] * 4), ("probs", leave)):  # value: every row at step 0
        model = Tokens(leave)
        _run(G.adaptive(G.cfg("shape", W), threshold=0.999, measure=measure), model, leave, steps, "logits")
        uncond_rows = [sorted(r for r, p in call if not p) for call in model.calls]
        assert uncond_rows == [[i for i, s in enumerate(gone) if s >= step] for step in range(steps)], measure
    # the cosines the rule compared, recomputed here: before leaving / after
    u = torch.tensor([4.0, 2.0, 0.0, -30.0, -30.0, -30.0])
    cases = ((torch.eye(6)[1], 0.99927, False), (-20 * torch.eye(6)[5], 0.96543, True))
    for d, value_cos, probs_above in cases:
        c, g = u + d, u + W * d
        assert float(torch.nn.functional.cosine_similarity(c, g, dim=0)) == pytest.approx(value_cos, abs=1e-4)
        pc = torch.nn.functional.cosine_similarity(c.softmax(0), g.softmax(0), dim=0)
        assert bool(pc > 0.999) == probs_above
    with pytest.raises(SpaceError, match=r"measure='probs'.*logits"):  # a user error: one CLI line
        _run(G.adaptive(G.cfg("shape", W), measure="probs"), Oracle(leave), leave, 2, "eps")


def test_patience_is_checked_and_shown():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="patience"):
            G.adaptive(G.cfg("shape", W), patience=bad)
    assert "patience=2" in repr(G.adaptive(G.cfg("shape", W), patience=2))
    with pytest.raises(ValueError, match="measure"):
        G.adaptive(G.cfg("shape", W), measure="logits")
    assert "measure='probs'" in repr(G.adaptive(G.cfg("shape", W), measure="probs"))


# ---------------------------------------------------------------- every family, end to end
def _alone_vs_batch(sample_one):
    """Samples of a batch of rows under per-sample adaptive == each row sampled alone."""
    batch, stats = sample_one(slice(None))
    alone = torch.cat([sample_one(slice(i, i + 1))[0] for i in range(batch.shape[0])])
    return batch, alone, stats


@pytest.mark.parametrize("options", [dict(threshold=0.995),
                                     dict(threshold=0.99, measure="probs", patience=2)])
def test_autoregressive_kv_caches_follow_the_compacted_rows(options):
    toy = CategoricalMixtureToy()
    fam = Autoregressive(toy.vocab, temperature=0)
    shapes = ["circle", "square", "triangle", "star"] * 2
    conds = Conditions.from_raw(toy.specs, {"shape": shapes, "color": "green"}, len(shapes))
    expr = G.adaptive(G.cfg(("shape", "color"), 2.5), **options)
    prompt = torch.randint(toy.vocab, (len(shapes), 3), generator=torch.Generator().manual_seed(0))

    def one(rows):
        c = conds.index(rows)
        out = fam.sample(ToyLM(toy), expr, c, (10,), 10, specs=toy.specs, init=prompt[rows])
        return out.samples, out.stats

    batch, alone, stats = _alone_vs_batch(one)
    assert torch.equal(batch, alone)
    rows = [s.row_evals for s in stats]
    B = len(shapes)
    assert any(B < r < 2 * B for r in rows), rows  # some rows left while others were still guided


@pytest.mark.parametrize(("threshold", "after", "patience"), [(0.999, 0.3, 1), (0.98, 0.0, 2)])
def test_flow_per_sample_rows_match_rows_sampled_alone(threshold, after, patience):
    toy = GaussianMixtureToy(flow_alpha_sigma)
    flow = Flow()

    def velocity(x, t, c):
        return flow.converter.convert(toy.x0(x, t, c), "x0", "flow_v", x=x, t=t)

    raw = {"shape": ["circle", "square", "triangle", "circle"], "color": ["red", "blue", "red", "blue"]}
    conds = Conditions.from_raw(toy.specs, raw, 4)
    init = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    expr = G.adaptive(G.cfg(("shape", "color"), 3.0), threshold=threshold, after=after, patience=patience)

    def one(rows):
        out = flow.sample(velocity, expr, conds.index(rows), (2,), 12, specs=toy.specs, init=init[rows])
        return out.samples, out.stats

    batch, alone, stats = _alone_vs_batch(one)
    torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-6)
    assert len({s.row_evals for s in stats}) > 2  # 8, then fewer as rows leave, then 4


@pytest.mark.parametrize(("family", "threshold"), [("diffusion", 0.99), ("diffusion", -1.0),
                                                   ("masked", -1.0), ("masked", 1.0)])
def test_other_families_run_per_sample_and_match_the_batch_policy_when_rows_agree(family, threshold):
    """Rows converge together: identical rows (diffusion from one noise), or every row at the first
    step (threshold −1), or never (threshold 1)."""
    if family == "diffusion":
        fam = Diffusion(sampler="ddim")
        ac = fam.train_scheduler.alphas_cumprod.double()
        toy = GaussianMixtureToy(lambda t: (ac[t.long()].sqrt(), (1 - ac[t.long()]).sqrt()))
        model = lambda x, t, c: toy.eps(x, t, c).float()
        shape, raw, n = (2,), {"shape": "square", "color": "red"}, 4
        init = torch.randn(1, 2, generator=torch.Generator().manual_seed(3)).repeat(n, 1)
    else:
        toy = CategoricalMixtureToy()
        fam = Masked(toy.vocab)
        model = toy.masked_logits
        shape, raw, n, init = (8,), {"shape": "square", "color": "green"}, 4, None
    conds = Conditions.from_raw(toy.specs, raw, n)
    outs = {}
    for per_sample in (True, False):
        expr = G.adaptive(G.cfg(("shape", "color"), 2.0), threshold=threshold, per_sample=per_sample)
        outs[per_sample] = fam.sample(model, expr, conds, shape, 6, specs=toy.specs, init=init,
                                      generator=torch.Generator().manual_seed(0))
    a, b = outs[True], outs[False]
    assert torch.equal(a.samples, b.samples)
    assert [s.row_evals for s in a.stats] == [s.row_evals for s in b.stats]
    if family == "diffusion" and threshold > 0:
        assert [s.row_evals for s in a.stats][-1] == n  # they did switch, together, before the end


def test_nested_per_sample_nodes_see_only_their_rows():
    leave, steps = [1, 4, 2, 6], 8
    single, _ = _run(G.adaptive(G.cfg("shape", W), threshold=0.9999), Oracle(leave), leave, steps)
    model = Oracle(leave)
    nested, _ = _run(G.adaptive(G.adaptive(G.cfg("shape", W), threshold=0.9999), threshold=0.9999),
                     model, leave, steps)
    for a, b in zip(single, nested, strict=True):
        torch.testing.assert_close(a.denoise, b.denoise, rtol=0, atol=0)
        assert a.stats.row_evals == b.stats.row_evals
