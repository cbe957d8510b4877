"""The trajectory cost: zero on the requested path, grows with the offset, differentiable."""

import numpy as np
import pytest
import torch

from framework.core.conditions import Conditions
from framework.guidance.ops.cost_grad import CostError
from modalities.motion.actions import generate_clip
from modalities.motion.codecs import Features, Tokens
from modalities.motion.costs import trajectory_cost
from modalities.motion.data import motion_specs
from modalities.motion.trajectory import encode_trajectory


def test_cost_is_the_mean_path_distance():
    codec = Features(64, 2)
    pos = torch.stack([generate_clip(np.random.default_rng(i)).positions for i in range(3)])
    x0 = codec.encode(pos)
    path = pos[:, :, 0, [0, 2]]
    request = encode_trajectory(torch.cat([path, torch.ones(3, 64, 1)], -1))
    cost = trajectory_cost(codec, motion_specs(["trajectory"]))
    conds = Conditions({"trajectory": request})
    assert torch.allclose(cost(x0, conds), torch.zeros(3), atol=1e-3)
    shifted = encode_trajectory(torch.cat([path + torch.tensor([0.3, -0.4]), torch.ones(3, 64, 1)], -1))
    assert torch.allclose(cost(x0, Conditions({"trajectory": shifted})), torch.full((3,), 0.5), atol=1e-3)
    # absent trajectories cost nothing
    absent = Conditions({"trajectory": shifted}, {"trajectory": torch.tensor([True, False, True])})
    assert float(cost(x0, absent)[1]) == 0.0
    # differentiable through the features → positions decode; a step along −∇ lowers the cost
    x = x0.clone().requires_grad_(True)
    c = cost(x, Conditions({"trajectory": shifted})).sum()
    (g,) = torch.autograd.grad(c, x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    after = cost(x0 - 0.05 * g, Conditions({"trajectory": shifted})).sum()
    assert after < c


def test_cost_needs_features_and_a_trajectory_condition():
    with pytest.raises(ValueError, match="needs a model with a 'trajectory' condition"):
        trajectory_cost(Features(), motion_specs(["action"]))
    with pytest.raises(CostError, match=r"needs a continuous motion model .* this model samples tokens"):
        trajectory_cost(object.__new__(Tokens), motion_specs(["trajectory"]))


def test_cost_without_any_trajectory_is_an_error_not_a_no_op():
    cost = trajectory_cost(Features(), motion_specs(["trajectory", "action"]))
    x0 = torch.zeros(2, 32, 142)
    absent = Conditions.from_raw(motion_specs(["trajectory", "action"]), {"action": "walk"}, 2)
    with pytest.raises(CostError, match="needs a trajectory to follow"):
        cost(x0, absent)


def test_cli_cost_errors_are_one_line(tmp_path, capsys):
    from framework.cli.main import main

    masked = "recipes/motion/checkpoints/motion_masked.ckpt"
    flow = "recipes/motion/checkpoints/motion_flow.ckpt"
    for ckpt, want in ((masked, "needs a continuous motion model"), (flow, "needs a trajectory to follow")):
        code = main(["sample", "--checkpoint", ckpt, "--cond", "action=walk", "--guidance",
                     "cfg(action, 2) + cost(trajectory, 5)", "--n", "1", "--steps", "2",
                     "--out", str(tmp_path / "o"), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and want in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
