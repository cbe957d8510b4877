"""The trajectory condition: encoder, sparse form, and clear errors for bad input."""

import numpy as np
import pytest
import torch

from framework.core.conditions import ConditionError, Conditions
from modalities.motion.data import motion_specs, sparsify
from modalities.motion.trajectory import DIM, decode_trajectory, load_trajectory, trajectory_encoder


def test_dense_and_sparse_encode_decode(tmp_path):
    path = torch.stack([torch.linspace(0, 2, 64), torch.linspace(0, 1, 64)], -1)
    np.save(tmp_path / "p.npy", path.numpy())
    tok = trajectory_encoder([str(tmp_path / "p.npy"), path])
    assert tok.shape == (2, 64, DIM) and torch.equal(tok[0], tok[1])
    assert torch.allclose(decode_trajectory(tok[0]), path, atol=1e-6)
    given = sparsify(torch.ones(64), np.random.default_rng(0))
    assert given[-1] == 1 and given.sum() in (1, 4, 8)
    sparse = trajectory_encoder([torch.cat([path, given[:, None]], -1)])[0]
    back = decode_trajectory(sparse)
    assert torch.isnan(back[given == 0]).all() and torch.allclose(back[given == 1], path[given == 1])
    # frame-index features differ between frames (cross-attention knows the frame)
    assert (sparse[0, 3:] - sparse[1, 3:]).abs().max() > 0.01


def test_condition_spec_uses_the_registered_encoder(tmp_path):
    path = np.zeros((64, 2), dtype=np.float32)
    np.save(tmp_path / "still.npy", path)
    conds = Conditions.from_raw(motion_specs(["trajectory", "action"]),
                                {"trajectory": str(tmp_path / "still.npy"), "action": "wave"}, 3)
    assert conds.values["trajectory"].shape == (3, 64, DIM)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((50, 2)), "has 50 frames, the model generates 64"),
    (np.zeros((64, 4)), r"expected shape \[64, 2\]"),
    (np.where(np.arange(64)[:, None] == 5, np.nan, 0.0) * np.ones((64, 2)),
     r"NaN or infinite values at frames \[5\]"),
    (np.concatenate([np.zeros((64, 2)), np.full((64, 1), 0.5)], 1), "must be 0 or 1"),
    (np.zeros((64, 3)), "no frame is given"),
])
def test_bad_trajectories_are_clear_errors(bad, match):
    with pytest.raises(ConditionError, match=match):
        load_trajectory(bad)


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(ConditionError, match="does not exist"):
        load_trajectory(tmp_path / "missing.npy")
    (tmp_path / "p.csv").write_text("1,2")
    with pytest.raises(ConditionError, match=r"expected a \.npy file"):
        load_trajectory(tmp_path / "p.csv")
