"""Procedural actions: determinism, feet on the floor, no foot sliding in contact, bad input."""

import numpy as np
import pytest
import torch

from modalities.motion.actions import ACTIONS, FRAMES, Segment, generate_clip, random_params, render_segments
from modalities.motion.captions import caption
from modalities.motion.metrics import foot_skating


def _one_of_each():
    clips = []
    for i, a in enumerate(ACTIONS):
        clips.append(render_segments([Segment(a, FRAMES, random_params(a, np.random.default_rng(i)))]))
    return clips


def test_every_action_renders_on_the_floor():
    for clip in _one_of_each():
        p = clip.positions
        assert p.shape == (FRAMES, 22, 3) and torch.isfinite(p).all()
        assert p[..., 1].min() > -1e-3, clip.action  # nothing below the floor
        assert clip.contacts.shape == (FRAMES, 2)


def test_planted_feet_do_not_slide():
    for seed in range(12):
        clip = generate_clip(np.random.default_rng(seed))
        for side, toe in ((0, 10), (1, 11)):
            c = clip.contacts[:, side]
            both = c[1:] & c[:-1]  # in contact on consecutive frames
            step = (clip.positions[1:, toe] - clip.positions[:-1, toe]).norm(dim=-1)
            assert step[both].max() < 1e-4 if both.any() else True, (seed, side)
            assert clip.positions[:, toe, 1][c].abs().max() < 1e-4  # planted on the floor


def test_data_passes_the_skating_metric():
    pos = torch.stack([generate_clip(np.random.default_rng(100 + i)).positions for i in range(24)])
    assert foot_skating(pos) < 0.02


def test_locomotion_moves_and_in_place_actions_stay():
    walk = render_segments([Segment("walk", FRAMES, {"speed": "normal", "path": "straight"})])
    assert walk.root[-1, 2] - walk.root[0, 2] > 1.5  # about 1 m/s for 3.2 s, with start and stop
    wave = render_segments([Segment("wave", FRAMES, {"speed": "normal"})])
    assert (wave.root[:, [0, 2]] - wave.root[0, [0, 2]]).norm(dim=-1).max() < 1e-5
    circle = render_segments([Segment("walk", FRAMES, {"path": "circle_left"})])
    assert circle.root[-1, 0] > 0.3  # a left turn heads towards +x (the body's left)


def test_deterministic_by_seed_and_composed():
    seed = next(s for s in range(50)
                if len(generate_clip(np.random.default_rng(s), compose=1.0).segments) == 2)
    a = generate_clip(np.random.default_rng(seed), compose=1.0)
    b = generate_clip(np.random.default_rng(seed), compose=1.0)
    assert torch.equal(a.positions, b.positions)
    assert not torch.equal(a.positions, generate_clip(np.random.default_rng(seed + 1)).positions)
    text = caption(a.segments, np.random.default_rng(0))
    assert ", then " in text or " and then " in text or "after that" in text


def test_unknown_action_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown action 'moonwalk'"):
        Segment("moonwalk", FRAMES)
    with pytest.raises(ValueError, match="segments cover 10 frames"):
        render_segments([Segment("walk", 10)])
