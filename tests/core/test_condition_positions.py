"""``positions: true`` on sequence conditions: index features make element order matter, and specs
saved without the field (old checkpoints) embed exactly as before."""

import math

import pytest
import torch
from torch.nn import functional as F

from framework.core.conditions import ConditionError, Conditions, ConditionSpec
from framework.core.shipped import recipes_dir
from framework.nn.backbone import Backbone, BackboneConfig
from framework.nn.conditioner import POSITION_FEATURES, Conditioner, position_features


def test_position_features_follow_the_formula_and_tell_indices_apart():
    pos = position_features(40)
    assert pos.shape == (40, POSITION_FEATURES)
    for i, k in ((0, 0), (3, 0), (5, 2), (37, 7)):  # sin(i·π/2^k), cos in the second half
        assert pos[i, k].item() == pytest.approx(math.sin(i * math.pi / 2 ** k), abs=1e-5)
        assert pos[i, POSITION_FEATURES // 2 + k].item() == pytest.approx(math.cos(i * math.pi / 2 ** k),
                                                                         abs=1e-5)
    many = position_features(128)
    dists = torch.cdist(many, many) + torch.eye(128) * 10
    assert dists.min() > 0.1  # every index up to 2^(K-1) has its own code
    torch.testing.assert_close(position_features(40), many[:40])  # absolute, not relative, indices
    with pytest.raises(ValueError, match="positive even number"):
        position_features(4, features=3)


def test_positions_are_for_sequences_only_and_must_be_a_bool():
    with pytest.raises(ConditionError, match="'shape': positions apply to sequence conditions only"):
        ConditionSpec("shape", labels=("a", "b"), positions=True)
    with pytest.raises(ConditionError, match="'melody': positions must be true or false, got 'yes'"):
        ConditionSpec("melody", kind="sequence", dim=12, positions="yes")
    assert ConditionSpec("melody", kind="sequence", dim=12).positions is False  # the old default


def _conditions(value: torch.Tensor) -> Conditions:
    return Conditions({"melody": value})


def test_the_conditioner_appends_index_features_before_the_linear():
    torch.manual_seed(0)
    spec = ConditionSpec("melody", kind="sequence", dim=12, positions=True)
    cond = Conditioner([spec], 16)
    lin = cond.embed["melody"]
    assert lin.in_features == 12 + POSITION_FEATURES
    value = torch.rand(2, 9, 12)
    emb = cond(_conditions(value))["melody"]
    want = F.linear(torch.cat([value, position_features(9).expand(2, -1, -1)], -1), lin.weight, lin.bias)
    torch.testing.assert_close(emb, want)
    # a constant sequence still gives a different embedding per element: the order is visible
    flat = cond(_conditions(torch.ones(1, 9, 12)))["melody"][0]
    assert (flat[1:] - flat[:1]).abs().amax(-1).min() > 1e-3


def test_a_spec_saved_without_positions_embeds_exactly_as_before():
    torch.manual_seed(0)
    old = ConditionSpec(**{"name": "melody", "kind": "sequence", "dim": 12})  # a checkpoint's dict
    cond = Conditioner([old], 16)
    lin = cond.embed["melody"]
    assert lin.in_features == 12
    value = torch.rand(3, 5, 12)
    torch.testing.assert_close(cond(_conditions(value))["melody"], F.linear(value, lin.weight, lin.bias))


def _backbone(positions: bool) -> Backbone:
    torch.manual_seed(0)
    spec = ConditionSpec("melody", kind="sequence", dim=12, positions=positions)
    return Backbone(BackboneConfig(in_dim=4, out_dim=4, seq_len=8, dim=32, depth=2, heads=2,
                                   conditions=(spec,))).eval()


@torch.no_grad()
def test_frame_order_changes_the_output_only_with_positions():
    x, t = torch.randn(2, 8, 4), torch.full((2,), 0.5)
    melody = torch.rand(2, 8, 12)
    shuffled = melody[:, torch.randperm(8, generator=torch.Generator().manual_seed(1))]
    for positions in (False, True):
        net = _backbone(positions)
        for p in net.parameters():  # a trained-looking net: the zero-initialised gates open
            p.add_(torch.randn_like(p) * 0.1)
        a, b = net(x, t, _conditions(melody)), net(x, t, _conditions(shuffled))
        if positions:
            assert (a - b).abs().max() > 1e-3
        else:  # cross-attention without positions sees a set: any order, the same output
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_the_shipped_motion_checkpoint_keeps_its_sequence_embedding():
    """motion_flow was saved before ``positions`` existed: its trajectory spec loads with
    ``positions=False`` and the same ``Linear`` as before (its encoder adds its own index features)."""
    from framework.training.module import load

    path = recipes_dir("motion") / "checkpoints" / "motion_flow.ckpt"
    model = load(str(path))
    seq = [s for s in model.specs.values() if s.kind == "sequence"]
    assert seq and all(not s.positions for s in seq)
    for s in seq:
        lin = model.backbone.conditioner.embed[s.name]
        assert lin.in_features == s.dim
        value = torch.rand(2, 7, s.dim)
        got = model.backbone.conditioner(Conditions.from_raw(model.specs, {s.name: value}, 2))[s.name]
        torch.testing.assert_close(got, F.linear(value, lin.weight, lin.bias))
