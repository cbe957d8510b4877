"""Procedural dance (modalities/motion/dance): accents on the score's beats, physics of real
clips, and the beat alignment score for real vs mismatched music."""

import numpy as np
import torch

from modalities.motion.dance.beat_align import beat_alignment, clip_alignment, kinematic_beats
from modalities.motion.dance.data import beat_lists, score_beats
from modalities.motion.dance.judge import feature_beats
from modalities.motion.dance.moves import ARM_MOVES, LEG_MOVES, dance_clip
from modalities.motion.physics import physics


def test_alignment_score_definition():
    assert clip_alignment(np.array([0.5, 1.0]), np.array([0.5, 1.0])) == 1.0
    assert clip_alignment(np.array([0.5]), np.array([1.0])) < 1e-10
    assert abs(clip_alignment(np.array([0.55]), np.array([0.5])) - np.exp(-0.5)) < 1e-9
    assert clip_alignment(np.array([]), np.array([0.5])) == 0.0
    assert clip_alignment(np.array([0.5]), np.array([])) is None


def test_kinematic_beats_are_the_stops():
    t = torch.arange(64) / 20
    x = torch.sin(2 * np.pi * t)  # stops at the extremes: t = 0.25, 0.75, ...
    pos = torch.zeros(1, 64, 22, 3)
    pos[..., 0] = x[None, :, None]
    beats = kinematic_beats(pos)[0]
    assert np.allclose(beats, np.arange(0.25, 3.1, 0.5), atol=0.051)


def test_every_move_stops_on_the_beat_and_stays_physical():
    period, beats = 0.5, np.arange(0.2, 3.2, 0.5)
    for i, leg in enumerate(LEG_MOVES):  # each leg move with one arm move, switching halfway
        moves = [(leg, ARM_MOVES[i]), (leg, ARM_MOVES[(i + 1) % len(ARM_MOVES)])]
        p = dance_clip(beats, period, moves, 0.8).positions[None]
        assert beat_alignment(p, [beats]) > 0.6, moves
        assert beat_alignment(p, [beats + period / 2]) < 0.35, moves  # off-beat: no accents
        ph = physics(p)
        assert ph["lowest_toe"] > -0.01 and ph["foot_skating"] == 0.0 and ph["bone_cv"] < 1e-4


def test_score_beat_grid_follows_a_pickup():
    notes = np.array([(0.5, 0.5, 60), (1.0, 1.0, 62), (2.0, 1.0, 64), (3.0, 0.5, 65), (3.5, 0.5, 67)],
                     dtype=np.float32)
    assert score_beats(notes) == 0.0
    assert score_beats(notes + np.array([0.5, 0, 0], dtype=np.float32)) == 0.5


def test_real_dances_align_with_their_music_not_with_other_music(dances):
    pos = torch.from_numpy(dances["positions"])
    beats = beat_lists(dances["beats"])
    real = beat_alignment(pos, beats)
    shuffled = beat_alignment(pos, beats[3:] + beats[:3])
    assert real > 0.65 and shuffled < real - 0.2, (real, shuffled)
    # the encoder's beats (from the audio alone) find the dance's beats well above chance
    estimated = beat_alignment(pos, feature_beats(torch.from_numpy(dances["music"])))
    assert estimated > 0.5 and estimated > shuffled + 0.1, (estimated, shuffled)
    assert dances["music"].shape == (8, 64, 17) and dances["wave"].shape == (8, 51200)
    assert len(set(dances["caption"])) > 4 and physics(pos)["lowest_toe"] > -0.01
