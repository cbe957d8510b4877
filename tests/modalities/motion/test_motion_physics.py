"""Rule-based physics metrics on known cases: a sinking foot, a sliding foot, jitter, stretching bones,
a one-frame collapse — and a real clip, which has none of them, read back from a written BVH."""

import numpy as np
import pytest
import torch

from modalities.motion.actions import Segment, generate_clip, render_segments
from modalities.motion.physics import bone_lengths, bvh_physics, physics


@pytest.fixture(scope="module")
def walk() -> torch.Tensor:
    return render_segments([Segment("walk", 64, {"path": "straight"})]).positions[None]  # [1, 64, 22, 3]


def test_real_clips_are_physically_valid(walk):
    rng = np.random.default_rng(0)
    clips = torch.cat([walk] + [generate_clip(rng).positions[None] for _ in range(3)])
    p = physics(clips)
    assert 0.3 < p["accel"] < 10  # m/s², human motion
    assert p["lowest_toe"] > -0.005 and p["penetration"] == 0.0
    assert p["foot_skating"] < 0.02 and p["bone_cv"] < 1e-4 and p["bone_error"] < 1e-4
    assert p["collapses"] == 0.0


def test_a_sinking_foot_is_penetration(walk):
    sunk = walk.clone()
    sunk[:, 32:, 10, 1] -= torch.linspace(0, 0.3, 32)  # the left toe sinks 30 cm over the second half
    p = physics(sunk)
    assert p["lowest_toe"] == pytest.approx(float(walk[0, 32:, 10, 1].min()) - 0.3, abs=0.02)
    assert 0.35 < p["penetration"] < 0.55  # about the frames of the second half below −2 cm


def test_a_sliding_foot_is_skating(walk):
    slide = walk.clone()
    slide[..., [10, 11], 0] += torch.arange(64.0)[:, None] * 0.05  # both toes slide sideways 5 cm a frame
    assert physics(walk)["foot_skating"] < 0.02
    assert physics(slide)["foot_skating"] > 0.3


def test_jitter_raises_acceleration_and_bone_variation(walk):
    noisy = walk + 0.03 * torch.randn(walk.shape, generator=torch.Generator().manual_seed(0))
    clean, rough = physics(walk), physics(noisy)
    assert rough["accel"] > 5 * clean["accel"]  # 3 cm of noise: ~ 0.03·√6·√3·400 ≈ 50 m/s² (a walk: ~8)
    assert rough["bone_cv"] > 0.05 and rough["bone_error"] > 0.05


def test_a_single_frame_collapse(walk):
    fall = walk.clone()
    fall[0, 30, :, 1] -= 0.6  # the whole body drops 60 cm for one frame (pelvis 0.9 → 0.3 → 0.9)
    assert physics(walk)["collapses"] == 0.0 and physics(fall)["collapses"] == 1.0


def test_bone_lengths_are_the_skeletons(walk):
    from modalities.motion.skeleton import OFFSETS, PARENTS

    lengths = bone_lengths(walk[0])
    rest = OFFSETS[[j for j, p in enumerate(PARENTS) if p >= 0]].norm(dim=-1)
    assert torch.allclose(lengths, rest.expand_as(lengths), atol=1e-5)


def test_physics_of_a_written_bvh_read_back(walk, tmp_path):
    p = bvh_physics(walk[:, :24], tmp_path)
    assert p["bvh_deviation"] < 1e-4 and p["penetration"] == 0.0 and p["bone_cv"] < 1e-4
    stretched = walk[:, :24].clone()
    stretched[..., 18:, :] *= 1.2  # elbows and wrists away from the shoulders: bones of another length
    q = bvh_physics(stretched, tmp_path / "s")
    assert q["bvh_deviation"] > 0.01  # the file keeps the skeleton's bones: it reports how far it is


@pytest.mark.parametrize("action,speed", [("run", "fast"), ("walk", "fast"), ("run", "normal")])
def test_fast_starts_keep_the_pelvis_up(action, speed):
    """A sprint from standing once left the trailing foot planted out of reach, dropping the pelvis
    to 17 cm for one frame (and the masked model learnt it)."""
    clip = render_segments([Segment(action, 64, {"speed": speed, "path": "circle_left"})]).positions
    assert physics(clip[None])["collapses"] == 0.0
    assert float(clip[:, 0, 1].min()) > 0.6


def test_the_shipped_flow_model_writes_the_motion_it_generates(tmp_path):
    """Rotation features + FK: constant bones, and the BVH read back is the generated motion
    (the position-features model: bone CV 0.48, BVH 17.6 cm from the generated joints)."""
    from framework.core.shipped import recipes_dir
    from framework.training.module import load

    model = load(str(recipes_dir("motion") / "checkpoints" / "motion_flow.ckpt"))
    out = model.sample({"action": "walk"}, "cfg(action, 2)", n=2, steps=4, seed=0)
    p = bvh_physics(out.media, tmp_path)
    assert p["bone_cv"] < 1e-4 and p["bvh_deviation"] < 0.01
