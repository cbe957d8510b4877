"""BVH files through bvhio: our file reads back to the same joint positions; other skeletons are refused."""

import numpy as np
import pytest
import torch

from modalities.motion.actions import generate_clip
from modalities.motion.bvh import BVHError, positions_to_rotations, read_bvh, write_bvh
from modalities.motion.skeleton import forward_kinematics


def test_rotations_reproduce_positions():
    clip = generate_clip(np.random.default_rng(2))
    local = positions_to_rotations(clip.positions)
    assert torch.allclose(forward_kinematics(local, clip.positions[:, 0])[0], clip.positions, atol=1e-5)


def test_round_trip_through_bvhio(tmp_path):
    clip = generate_clip(np.random.default_rng(4))
    pos = clip.positions[:16]
    path = write_bvh(pos, tmp_path / "a.bvh")
    text = path.read_text()
    assert text.startswith("HIERARCHY") and "Frames: 16" in text and "Frame Time: 0.05" in text
    back = read_bvh(path)  # positions computed by bvhio's own hierarchy transforms
    assert back.shape == pos.shape
    assert torch.allclose(back, pos, atol=1e-4)


def test_other_skeletons_are_refused(tmp_path):
    pos = generate_clip(np.random.default_rng(5)).positions[:4]
    good = write_bvh(pos, tmp_path / "a.bvh").read_text()
    renamed = tmp_path / "renamed.bvh"
    renamed.write_text(good.replace("JOINT left_wrist", "JOINT LeftHand"))
    want = r"different skeleton.*missing \['left_wrist'\].*unknown \['LeftHand'\]"
    with pytest.raises(BVHError, match=want):
        read_bvh(renamed)
    # a different hierarchy: the same 22 names, the head hung from the pelvis
    lines = good.splitlines()
    with pytest.raises(BVHError):
        read_bvh(_write(tmp_path / "x.bvh", "\n".join([*lines[:3], "garbage", *lines[3:]])))
    with pytest.raises(FileNotFoundError):
        read_bvh(tmp_path / "missing.bvh")
    with pytest.raises(ValueError, match=r"one motion \[T, 22, 3\]"):
        write_bvh(torch.zeros(4, 21, 3), tmp_path / "b.bvh")


def _write(path, text):
    path.write_text(text)
    return path
