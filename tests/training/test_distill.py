"""Guidance distillation: targets equal the engine's guided predictions, the loss vanishes on a
student that gives them, a student learns an exact guided target, bad recipes fail clearly."""

import warnings

import pytest
import torch
from torch import nn
from transformers import ClassifierFreeGuidanceLogitsProcessor

from framework.core.conditions import Conditions
from framework.guidance import parse
from framework.model.checkpoints import CheckpointError
from framework.toy.data import MixtureData
from framework.toy.model import CategoricalMixtureToy, GaussianMixtureToy, ToyLM, flow_alpha_sigma
from framework.training.distill import GuidanceDistillation, discrete_kl, teacher_guider
from framework.training.module import GenerativeModule, load

warnings.filterwarnings("ignore", ".*does not have many workers.*")
CONDS = [{"name": "shape", "labels": ["circle", "square", "triangle", "star"]},
         {"name": "color", "labels": ["red", "green", "blue"]}]
FAMILY = "cfg((shape, color), {w})"


def _teacher(tmp_path, family="flow", fargs=None, shape=(1, 2), name="teacher.ckpt", **kw):
    torch.manual_seed(0)
    m = GenerativeModule(family=family, family_args=fargs or {}, shape=list(shape), conditions=CONDS,
                         backbone={"dim": 32, "depth": 1, "heads": 2},
                         guidance=["cfg((shape, color), 3)", "nested([shape, color], [2, 2])"], **kw)
    path = tmp_path / name
    torch.save({"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams)}, path)
    return path


class _Exact(nn.Module):
    """The toy's exact flow velocity ``E[ε − x0 | x_t, S]`` with the backbone's contract (``[B, 1, 2]``)."""

    def __init__(self, toy: GaussianMixtureToy) -> None:
        super().__init__()
        self.toy = toy

    def forward(self, x, t, conditions, **_):
        p = x[:, 0]
        return (self.toy.eps(p, t, conditions) - self.toy.x0(p, t, conditions))[:, None]


class _Module(nn.Module):
    """A plain callable (the toy LM) as a module, so it can stand in for a teacher's backbone."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


def _conds(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Conditions({"shape": torch.randint(4, (n,), generator=g),
                       "color": torch.randint(3, (n,), generator=g)})


def _cfg_by_hand(net, x, t, conds, w):
    """CFG written out from two plain calls: ``u + w·(c − u)`` (an oracle independent of the engine)."""
    null = Conditions(dict(conds.values), {k: torch.zeros_like(v) for k, v in conds.present.items()})
    u, c = net(x, t, null), net(x, t, conds)
    return u + w.view(-1, *[1] * (x.ndim - 1)) * (c - u)


def test_targets_are_the_guided_teacher_and_the_loss_vanishes_on_it(tmp_path):
    m = GuidanceDistillation(str(_teacher(tmp_path)), FAMILY, weights=[1, 6], groups=3)
    B = 24
    x, t = torch.randn(B, 1, 2), torch.rand(B)
    conds = _conds(B)
    w, plain = m.draw(B, torch.device("cpu"), torch.Generator().manual_seed(1))
    plain[:4] = True
    target, sc = m.targets(x, t, conds, w, plain)
    net = m.teacher.backbone
    guided = _cfg_by_hand(net, x, t, conds, w)
    torch.testing.assert_close(target[~plain], guided[~plain], rtol=1e-5, atol=1e-5)
    assert len(torch.unique(w)) == 3 and sc.present["w"].tolist() == (~plain).tolist()
    plain_conds = Conditions(conds.values, {k: sc.present[k] for k in conds.names})
    torch.testing.assert_close(target[plain], net(x, t, plain_conds)[plain])

    class GuidedStudent(nn.Module):  # gives exactly the guided teacher (and the teacher without w)
        def forward(self, x, t, c):
            out = torch.empty_like(x)
            has_w = c.present["w"]
            teacher_conds = Conditions({k: c.values[k] for k in conds.names},
                                       {k: c.present[k] for k in conds.names})
            out[has_w] = _cfg_by_hand(net, x, t, teacher_conds, c.values["w"])[has_w]
            out[~has_w] = net(x, t, teacher_conds)[~has_w]
            return out

    m.student.backbone = GuidedStudent()
    batch = {"x": torch.randn(B, 1, 2), "conditions": dict(conds.values)}
    assert m.distill_loss(batch, torch.Generator().manual_seed(2)).item() < 1e-10
    assert m.distill_loss(batch).item() < 1e-10  # whatever w, t and dropout are drawn


@pytest.mark.parametrize("family", [FAMILY, "nested([shape, color], [2, {w}])"])
def test_per_row_weights_equal_the_teacher_guided_one_row_at_a_time(tmp_path, family):
    """A weight per row, from one batched teacher pass, equals the engine's guided prediction of
    each row computed alone at that row's weight (including w = 1, where cfg prunes uncond)."""
    m = GuidanceDistillation(str(_teacher(tmp_path)), family, weights=[1, 6], low_rate=0.25, skew=2.0)
    m.teacher.backbone = _Exact(GaussianMixtureToy(flow_alpha_sigma))  # conditions matter (not a fresh net)
    B = 16
    x, t, conds = torch.randn(B, 1, 2), torch.rand(B), _conds(B)
    w, plain = m.draw(B, torch.device("cpu"), torch.Generator().manual_seed(3))
    plain[:3] = True
    assert len(torch.unique(w[~plain])) >= 5 and bool((w[~plain] == 1).any())
    target, _ = m.targets(x, t, conds, w, plain)
    for i in (~plain).nonzero().squeeze(1).tolist():
        g = teacher_guider(m.teacher, parse(family.format(w=float(w[i]))))
        alone = g.step(x[i:i + 1], t[i:i + 1], 0.0, conds.index(torch.tensor([i])), g.new_state()).denoise
        torch.testing.assert_close(target[i:i + 1], alone, rtol=1e-5, atol=1e-6)
    cond = m.teacher.backbone(x, t, conds)
    assert (target - cond)[~plain & (w > 1.5)].flatten(1).norm(dim=1).min() > 1e-2  # w changes the target


def test_w_1_rows_are_the_conditional_prediction(tmp_path):
    m = GuidanceDistillation(str(_teacher(tmp_path)), FAMILY, weights=[1, 8], low_rate=1.0)
    m.teacher.backbone = _Exact(GaussianMixtureToy(flow_alpha_sigma))
    B = 12
    x, t, conds = torch.randn(B, 1, 2), torch.rand(B), _conds(B)
    w, _ = m.draw(B, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert w.tolist() == [1.0] * B
    target, _ = m.targets(x, t, conds, w, torch.zeros(B, dtype=torch.bool))
    cond = m.teacher.backbone(x, t, conds)
    torch.testing.assert_close(target, cond, rtol=1e-5, atol=1e-6)
    null = Conditions(dict(conds.values), {k: torch.zeros_like(v) for k, v in conds.present.items()})
    assert (cond - m.teacher.backbone(x, t, null)).abs().max() > 1e-2  # uncond really differs


def test_discrete_per_row_weights_and_w_1(tmp_path):
    """Autoregressive teacher: per-row weights give each row's renormalised guided distribution,
    and w = 1 rows the conditional distribution itself."""
    toy = CategoricalMixtureToy()
    path = _teacher(tmp_path, "autoregressive", {"vocab_size": toy.vocab}, shape=(8,))
    m = GuidanceDistillation(str(path), "cfg(shape, {w})", weights=[1, 5])
    m.teacher.backbone = _Module(ToyLM(toy))
    B, L = 5, 8
    conds = _conds(B)
    tokens = toy.sample_data(conds, L, torch.Generator().manual_seed(0))
    x_in, t, _ = m.student.family.training_inputs(tokens)
    w = torch.tensor([1.0, 1.7, 2.9, 4.2, 5.0])
    target, _ = m.targets(x_in, t, conds, w, torch.zeros(B, dtype=torch.bool))
    shape_only = Conditions(conds.values, {"shape": torch.ones(B, dtype=torch.bool),
                                           "color": torch.zeros(B, dtype=torch.bool)})
    null = Conditions(conds.values, {k: torch.zeros(B, dtype=torch.bool) for k in conds.names})
    c = torch.log_softmax(toy.next_logits(x_in, shape_only), -1)
    u = torch.log_softmax(toy.next_logits(x_in, null), -1)
    expected = torch.log_softmax(u + w.view(-1, 1, 1) * (c - u), -1)
    torch.testing.assert_close(target, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(target[0], c[0], rtol=1e-4, atol=1e-4)


def test_weight_draws_follow_skew_low_rate_and_groups(tmp_path):
    path = str(_teacher(tmp_path))
    B, g = 20000, torch.Generator().manual_seed(0)
    per_row = GuidanceDistillation(path, FAMILY, weights=[1, 5], skew=2.0, low_rate=0.1)
    w, _ = per_row.draw(B, torch.device("cpu"), g)
    assert float((w == 1).float().mean()) == pytest.approx(0.1, abs=0.01)
    rest = w[w != 1]
    # P(w < 2) = P(u^2 < 1/4) = 1/2 for skew 2 (1/4 when uniform)
    assert float((rest < 2).float().mean()) == pytest.approx(0.5, abs=0.015)
    assert bool((rest > 1).all() & (rest <= 5).all()) and len(torch.unique(rest)) > B * 0.8
    grouped = GuidanceDistillation(path, FAMILY, weights=[1, 5], groups=4)
    w, _ = grouped.draw(64, torch.device("cpu"), g)
    assert len(torch.unique(w)) == 4
    with pytest.raises(ValueError, match="skew must be > 0"):
        GuidanceDistillation(path, FAMILY, skew=0.0)
    with pytest.raises(ValueError, match=r"low_rate must be in \[0, 1\]"):
        GuidanceDistillation(path, FAMILY, low_rate=1.5)


def test_row_weights_and_cosine_schedule(tmp_path):
    from framework.training.distill import _lr_factor

    m = GuidanceDistillation(str(_teacher(tmp_path)), FAMILY, weights=[1, 8], weight_power=2.0)
    w = torch.tensor([1.0, 2.0, 4.0, 0.5, 7.0])
    plain = torch.tensor([False, False, False, False, True])
    rows = m.row_weights(w, plain)
    raw = torch.tensor([1.0, 1 / 4, 1 / 16, 1.0, 1.0])  # |w| < 1 counts as 1; plain rows weigh 1
    torch.testing.assert_close(rows, raw / raw.mean())
    flat = GuidanceDistillation(str(_teacher(tmp_path)), FAMILY, weights=[1, 8])
    assert flat.row_weights(w, plain).tolist() == [1.0] * 5
    # the weighted loss is the weighted mean of the rows' squared errors
    B = 8
    batch = {"x": torch.randn(B, 1, 2), "conditions": dict(_conds(B).values)}
    loss = m.distill_loss(batch, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    x0, conds = m.teacher._batch(batch)
    x_in, t, _ = m.student.family.training_inputs(x0, g)
    w, plain = m.draw(B, x0.device, g)
    target, sc = m.targets(x_in, t, conds, w, plain, g)
    err = (m.student.backbone(x_in, t, sc) - target).pow(2).flatten(1).mean(1)
    torch.testing.assert_close(loss, (err * m.row_weights(w, plain)).mean())
    assert [_lr_factor(s, 10, 110, False) for s in (0, 9, 60, 109)] == [0.1, 1.0, 1.0, 1.0]
    assert [round(_lr_factor(s, 10, 110, True), 6) for s in (0, 10, 60, 110)] == [0.1, 1.0, 0.5, 0.0]


def test_student_starts_as_the_teacher_and_exports_a_loadable_checkpoint(tmp_path):
    m = GuidanceDistillation(str(_teacher(tmp_path)), FAMILY, weights=[1, 1])
    B = 16
    x, t, conds = torch.randn(B, 1, 2), torch.rand(B), _conds(B)
    for plain in (torch.zeros(B, dtype=torch.bool), torch.ones(B, dtype=torch.bool)):
        # at w = 1 the guided target is the conditional prediction, and without w the teacher's own:
        # the new student, whose w embedding starts at zero, already gives both
        target, sc = m.targets(x, t, conds, torch.ones(B), plain)
        torch.testing.assert_close(m.student.backbone(x, t, sc), target, rtol=0, atol=1e-6)
    student = load(m.save_student(tmp_path / "student.ckpt"))
    assert student.specs["w"].kind == "scalar"
    assert student.hparams.guidance == ["cond(color, shape, w=3)"]
    out = student.sample({"shape": "circle", "color": "red"}, "cond(shape, color, w=4)", n=4, steps=5, seed=0)
    assert out.nfe == 5  # one evaluation per step
    guided = student.sample({"shape": "circle", "color": "red"}, "cfg((shape, color, w), 2)", n=4, steps=5,
                            seed=0)
    assert guided.nfe == 10  # the student can itself be guided (w is absent in its uncond branch)


def test_student_learns_an_exact_guided_velocity(tmp_path):
    """On the analytic mixture the teacher is exact, so the guided target is known in closed form;
    a few hundred steps bring the student far closer to it than the unguided velocity is."""
    torch.manual_seed(0)
    STEPS = 100
    m = GuidanceDistillation(str(_teacher(tmp_path)), FAMILY, weights=[1, 4], groups=8, lr=3e-3,
                             warmup_steps=10, plain_rate=0.1)
    toy = GaussianMixtureToy(flow_alpha_sigma)
    m.teacher.backbone = _Exact(toy)
    dm = MixtureData(kind="points", n_train=4096, n_val=64, batch_size=128)
    dm.setup("fit")
    opt = torch.optim.Adam(m.student.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    steps = 0
    while steps < STEPS:
        for batch in dm.train_dataloader():
            loss = m.distill_loss(batch, g)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            if steps == STEPS:
                break
    B = 2048
    conds = _conds(B, seed=5)
    comp = conds.values["shape"] * 3 + conds.values["color"]
    x0 = toy.means.reshape(-1, 2)[comp].float() + toy.std * torch.randn(B, 2)
    t = torch.rand(B) * 0.9 + 0.05
    x = ((1 - t[:, None]) * x0 + t[:, None] * torch.randn(B, 2))[:, None]
    w = torch.full((B,), 3.0)
    exact = _cfg_by_hand(m.teacher.backbone, x, t, conds, w)
    sc = Conditions({**conds.values, "w": w})
    with torch.no_grad():
        err = (m.student.backbone(x, t, sc) - exact).pow(2).mean()
    unguided = (m.teacher.backbone(x, t, conds) - exact).pow(2).mean()
    print(f"student error {float(err):.4f}, unguided {float(unguided):.4f}")
    assert err < 0.1 * unguided, (float(err), float(unguided))


def test_discrete_target_is_cfg_as_transformers_computes_it(tmp_path):
    """The autoregressive target is the guided distribution of transformers' CFG logits processor,
    renormalised, at every position of a teacher-forced sequence (an exact toy LM as the teacher)."""
    toy = CategoricalMixtureToy()
    path = _teacher(tmp_path, "autoregressive", {"vocab_size": toy.vocab}, shape=(8,))
    m = GuidanceDistillation(str(path), "cfg(shape, {w})", weights=[1, 5], groups=2)
    m.teacher.backbone = _Module(ToyLM(toy))
    B, L = 6, 8
    conds = _conds(B)
    tokens = toy.sample_data(conds, L, torch.Generator().manual_seed(0))
    x_in, t, _ = m.student.family.training_inputs(tokens)
    w = torch.tensor([1.5, 1.5, 1.5, 4.0, 4.0, 4.0])
    target, _ = m.targets(x_in, t, conds, w, torch.zeros(B, dtype=torch.bool))
    shape_only = Conditions(conds.values, {"shape": torch.ones(B, dtype=torch.bool),
                                           "color": torch.zeros(B, dtype=torch.bool)})
    null = Conditions(conds.values, {k: torch.zeros(B, dtype=torch.bool) for k in conds.names})
    cond_logits, uncond_logits = toy.next_logits(x_in, shape_only), toy.next_logits(x_in, null)
    for rows, scale in ((slice(0, 3), 1.5), (slice(3, 6), 4.0)):
        proc = ClassifierFreeGuidanceLogitsProcessor(scale)
        for pos in range(L):
            scores = torch.cat([cond_logits[rows, pos], uncond_logits[rows, pos]])
            expected = torch.log_softmax(proc(x_in[rows, :pos + 1], scores), dim=-1)
            torch.testing.assert_close(target[rows, pos], expected, rtol=1e-4, atol=1e-4)
    # the same logits give zero KL; a student at w = 1 (the conditional) does not
    assert discrete_kl(target, target.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert discrete_kl(target, cond_logits).item() > 1e-3


def test_discrete_kl_ignores_excluded_tokens_and_uncounted_positions():
    logp = torch.log_softmax(torch.tensor([[[0.0, 1.0, -torch.inf], [2.0, 0.0, 1.0]]]), dim=-1)
    q = torch.tensor([[[0.0, 1.0, 5.0], [0.0, 0.0, 0.0]]])
    kl_first = (logp[0, 0, :2].exp() * (logp[0, 0, :2] - torch.log_softmax(q[0, 0], -1)[:2])).sum()
    got = discrete_kl(logp, q, torch.tensor([[True, False]]))
    assert torch.isfinite(got) and got.item() == pytest.approx(kl_first.item(), rel=1e-5)


def test_masked_teacher_targets_use_the_engine(tmp_path):
    path = _teacher(tmp_path, "masked", {"vocab_size": 12}, shape=(8,))
    m = GuidanceDistillation(str(path), "cfg((shape, color), {w})", weights=[2, 2])
    tokens = torch.randint(12, (4, 8))
    x_in, t, _ = m.student.family.training_inputs(tokens, torch.Generator().manual_seed(0))
    conds = _conds(4)
    target, _ = m.targets(x_in, t, conds, torch.full((4,), 2.0), torch.zeros(4, dtype=torch.bool))
    g = teacher_guider(m.teacher, parse("cfg((shape, color), 2)"))
    ref = g.step(x_in, t, 0.0, conds, g.new_state()).denoise
    torch.testing.assert_close(target, torch.log_softmax(ref, -1))
    batch = {"x": tokens, "conditions": dict(conds.values)}
    assert torch.isfinite(m.distill_loss(batch, torch.Generator().manual_seed(0)))


def test_bad_recipes_fail_with_one_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match=r"missing\.ckpt: no such file"):
        GuidanceDistillation(str(tmp_path / "missing.ckpt"), FAMILY)
    (tmp_path / "notes.ckpt").write_text("hello")
    with pytest.raises(CheckpointError, match=r"notes\.ckpt: is a text file"):
        GuidanceDistillation(str(tmp_path / "notes.ckpt"), FAMILY)
    path = _teacher(tmp_path)
    with pytest.raises(CheckpointError, match=r"teacher checkpoint .*teacher.ckpt: has no condition 'genre'"):
        GuidanceDistillation(str(path), "cfg(genre, {w})")
    with pytest.raises(CheckpointError, match=r"teacher.ckpt: already has a condition named 'shape'"):
        GuidanceDistillation(str(path), FAMILY, condition="shape")
    with pytest.raises(ValueError, match=r"no \{w\} placeholder"):
        GuidanceDistillation(str(path), "cfg((shape, color), 3)")
    with pytest.raises(ValueError, match="changes with the sampling progress"):
        GuidanceDistillation(str(path), "cfg((shape, color), {w}).within(0.2, 0.8)")
    with pytest.raises(ValueError, match=r"weights must be \[low, high\]"):
        GuidanceDistillation(str(path), FAMILY, weights=[4, 1])


def test_scalar_condition_values():
    from framework.core.conditions import ConditionError, ConditionSpec

    spec = ConditionSpec("w", kind="scalar")
    assert spec.encode("4", 3).tolist() == [4.0, 4.0, 4.0]
    assert spec.encode([1, 2.5], 2).tolist() == [1.0, 2.5]
    for bad in ("high", float("nan"), True):
        with pytest.raises(ConditionError, match="'w'"):
            spec.encode(bad, 2)
    with pytest.raises(ConditionError, match="takes no labels"):
        ConditionSpec("w", kind="scalar", labels=("a",))


def test_cli_gives_the_weight_as_a_number():
    from framework.cli.commands import parse_conditions
    from framework.core.conditions import ConditionError, ConditionSpec

    specs = {"w": ConditionSpec("w", kind="scalar"), "shape": ConditionSpec("shape", labels=("circle",))}
    assert parse_conditions(["shape=circle", "w=4.5"], specs) == {"shape": "circle", "w": 4.5}
    with pytest.raises(ConditionError, match="'w' is a scalar: give a number, got 'strong'"):
        parse_conditions(["w=strong"], specs)


def test_fit_exports_the_student_resumes_and_a_stopped_run_exports(tmp_path):
    from framework.cli.fit import fit_main
    from framework.training.distill import export_student

    teacher = _teacher(tmp_path)
    recipe = tmp_path / "distill.yaml"
    recipe.write_text(f"""
model:
  class_path: framework.training.distill.GuidanceDistillation
  init_args: {{teacher: {teacher}, guidance: "cfg((shape, color), {{w}})", weights: [1, 4],
              export: {tmp_path / "student.ckpt"}}}
data:
  class_path: framework.toy.data.MixtureData
  init_args: {{kind: points, n_train: 128, n_val: 32, batch_size: 32}}
trainer:
  max_steps: 2
  limit_val_batches: 1
  enable_progress_bar: false
  default_root_dir: {tmp_path}
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{save_last: true}}
""")
    fit_main(["fit", "--config", str(recipe)])
    student = load(tmp_path / "student.ckpt")
    assert student.specs["w"].kind == "scalar"
    (last,) = tmp_path.rglob("last.ckpt")
    again = load(export_student(last, tmp_path / "again.ckpt"))
    for k, v in student.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v)
    fit_main(["fit", "--config", str(recipe), "--trainer.max_steps", "3", "--ckpt_path", str(last)])
    info = torch.load(tmp_path / "student.ckpt", weights_only=True)["distillation"]
    assert info["steps"] == 3 and info["guidance"] == "cfg((shape, color), {w})"
