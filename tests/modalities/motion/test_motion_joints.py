"""The ``joints`` condition and cost (any-joint control, in-betweening) and the join acceleration."""

import numpy as np
import pytest
import torch

from framework.core.conditions import ConditionError, Conditions
from framework.guidance.ops.cost_grad import CostError
from modalities.motion.actions import generate_clip
from modalities.motion.codecs import Features, Latent
from modalities.motion.costs import joint_error, joints_cost
from modalities.motion.joints import DIM, decode_joints, encode_joints, load_joints, random_targets
from modalities.motion.physics import join_acceleration
from modalities.motion.vq import MotionVQ, save_vq


@pytest.fixture(scope="module")
def clip():
    return generate_clip(np.random.default_rng(3)).positions  # [64, 22, 3]


@pytest.fixture(scope="module")
def latent(tmp_path_factory):
    torch.manual_seed(0)
    path = save_vq(MotionVQ(width=16, code_dim=8, codebook_size=16, features="rotations"),
                   tmp_path_factory.mktemp("vq") / "vq.pt")
    return Latent(str(path), 64)


def test_nan_marks_free_joints_and_tokens_round_trip(clip, tmp_path):
    raw = torch.full((64, 22, 3), float("nan"))
    raw[40, 21] = clip[40, 21]
    np.save(tmp_path / "t.npy", raw.numpy())
    t = load_joints(str(tmp_path / "t.npy"))
    assert t.shape == (64, 22, 4) and int(t[..., 3].sum()) == 1 and bool(t[40, 21, 3] == 1)
    tokens = encode_joints(t)
    assert tokens.shape == (64, DIM)
    want, given = decode_joints(tokens)
    assert torch.allclose(want[40, 21], clip[40, 21], atol=1e-6) and int(given.sum()) == 1
    exact = joint_error(clip[None], tokens[None])
    assert float(exact) < 1e-3
    moved = clip.clone()
    moved[40, 21, 1] += 0.1  # 10 cm off at the one given (frame, joint)
    assert abs(float(joint_error(moved[None], tokens[None])) - 0.1) < 1e-3


@pytest.mark.parametrize("value, match", [
    (np.zeros((64, 21, 3)), r"expected shape \[64, 22, 3\]"),
    (np.zeros((50, 22, 4)), "has 50 frames, the model generates 64"),
    (np.full((64, 22, 3), np.nan), "no joint is given"),
    (np.where(np.arange(3) == 0, np.nan, 0.0) * np.ones((64, 22, 3)), "some coordinates NaN"),
    (np.concatenate([np.zeros((64, 22, 3)), np.full((64, 22, 1), 2.0)], -1), "must be 0 or 1"),
])
def test_bad_requests_are_one_line_errors(value, match):
    with pytest.raises(ConditionError, match=match):
        load_joints(value)


def test_random_training_targets_come_from_the_clip(clip):
    rng = np.random.default_rng(0)
    for _ in range(20):
        t = random_targets(clip, rng)
        given = t[..., 3] > 0
        assert bool(given.any())
        assert torch.allclose(t[..., :3][given], clip[given])


def test_the_cost_pulls_decoded_joints_to_the_targets(latent, clip):
    targets = torch.zeros(64, 22, 4)
    targets[[10, 40], 21, :3] = clip[[10, 40], 21]
    targets[[10, 40], 21, 3] = 1.0
    cond = Conditions({"joints": encode_joints(targets)[None]})
    cost = joints_cost(latent, {"joints": None})
    x = torch.zeros(1, *latent.shape, requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.1)
    first = float(cost(x, cond).detach())
    for _ in range(15):
        loss = cost(x, cond).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(cost(x, cond).detach()) < 0.7 * first


def test_cost_errors(latent):
    with pytest.raises(CostError, match="needs a model with a 'joints' condition"):
        joints_cost(latent, {"text": None})
    with pytest.raises(CostError, match="continuous motion model"):
        joints_cost(object(), {"joints": None})
    cost = joints_cost(Features(64, 4), {"joints": None})
    absent = Conditions({"joints": torch.zeros(2, 64, DIM)},
                        present={"joints": torch.zeros(2, dtype=torch.bool)})
    with pytest.raises(CostError, match="needs joint targets"):
        cost(torch.zeros(2, 16, 284), absent)


def test_join_acceleration_sees_a_jump_at_the_join(clip):
    smooth = clip[None]
    given = torch.zeros(1, 64, dtype=torch.bool)
    given[:, :20] = True
    assert join_acceleration(smooth, given) < 2.0
    jumped = smooth.clone()
    jumped[:, 20:] += torch.tensor([0.3, 0.0, 0.0])  # the generated part starts 30 cm away
    assert join_acceleration(jumped, given) > 5.0
