"""Procedural dance on the motion skeleton: moves whose accents fall on given beat times.

A dance is a leg move and an arm move per half of the clip, drawn from a style's vocabulary
(:data:`VOCABULARY`). Every move is *pose to pose*: it holds a key pose on each beat and travels
between keys with a quintic ease, so the body's speed has one minimum per beat, on the beat (a
kinematic beat, AIST++'s definition), and stepping feet land on the beat. The channels are those
of the action generator (:mod:`modalities.motion.actions`): pelvis path/height/heading, footsteps
(legs by two-bone IK, so a planted foot stays put) and arm directions, posed by forward kinematics
on the same skeleton, so dance clips decode and write exactly like every motion clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..actions import FOOT_W
from ..actions import swing_foot as _swing_foot
from ..channels import FPS, FRAMES
from ..channels import Channels as _State
from ..channels import body_direction as _dir
from ..channels import unit as _norm
from ..pose import channels_to_pose as _pose

__all__ = ["ARM_MOVES", "LEG_MOVES", "STYLES", "VOCABULARY", "Dance", "dance_clip", "random_dance"]

LEG_MOVES = ("bounce", "step_touch", "march", "turn")
ARM_MOVES = ("arm_swing", "arms_up", "clap", "punch_up")
#: the music styles (:data:`modalities.audio.music.STYLES`) and the moves each one dances
STYLES = ("chorale", "renaissance", "irish", "chinese")
VOCABULARY = {
    "chorale": (("bounce", "turn"), ("arm_swing", "arms_up")),
    "renaissance": (("step_touch", "turn"), ("clap", "arm_swing")),
    "irish": (("march", "step_touch"), ("arm_swing", "clap")),
    "chinese": (("bounce", "march"), ("punch_up", "arms_up")),
}


@dataclass
class Dance:
    """A generated dance: positions ``[T, 22, 3]``, foot contact ``[T, 2]``, the beat times it was
    danced to ``[K]`` (seconds) and its moves (``[(leg, arm), (leg, arm)]`` for the two halves)."""

    positions: torch.Tensor
    contacts: torch.Tensor
    beats: np.ndarray
    moves: list[tuple[str, str]]


def _keyed(t: np.ndarray, key_t: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Values ``[T, ...]`` at times ``t`` eased between ``keys`` ``[K, ...]`` held at times
    ``key_t`` ``[K]`` (ascending; held constant outside). The ease is the cubic smoothstep: the
    speed falls linearly to zero at each key, a sharp stop on the beat (a quintic ease would
    leave a flat, poorly placed minimum)."""
    i = np.clip(np.searchsorted(key_t, t, side="right") - 1, 0, len(key_t) - 2)
    u = np.clip((t - key_t[i]) / (key_t[i + 1] - key_t[i]), 0.0, 1.0)
    u = u * u * (3 - 2 * u)
    u = u.reshape(-1, *([1] * (keys.ndim - 1)))
    return keys[i] + u * (keys[i + 1] - keys[i])


def _arm_keys(move: str, n: int, amp: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-beat key directions (upper arm, forearm; body frame) ``[n, 3]`` of both arms."""
    out = {}
    for side, sgn in (("left", 1.0), ("right", -1.0)):
        rest_up, rest_fa = _dir(90 * sgn, -75), _dir(20 * sgn, -60)
        ups, fas = [], []
        for k in range(n):
            even = (k % 2 == 0)
            mine = even == (side == "left")  # alternating moves: left on even beats
            if move == "arm_swing":
                up = _dir(25 * sgn, -75 + 45 * amp) if mine else _dir(150 * sgn, -75 + 20 * amp)
                fa = _dir(15 * sgn, -60 + 50 * amp) if mine else _dir(150 * sgn, -70 + 15 * amp)
            elif move == "arms_up":
                up = _dir(90 * sgn, -75 + 135 * amp) if mine else rest_up
                fa = _dir(90 * sgn, -60 + 140 * amp) if mine else rest_fa
            elif move == "clap":
                up = _dir(20 * sgn, -30 + 20 * amp) if even else _dir(75 * sgn, -40 + 20 * amp)
                fa = _dir(-25 * sgn, -10 + 10 * amp) if even else _dir(95 * sgn, -20 + 25 * amp)
            else:  # punch_up: a fist up on the beat, guard between
                up = _dir(40 * sgn, -20 + 95 * amp) if mine else _dir(45 * sgn, -40)
                fa = _dir(40 * sgn, -10 + 95 * amp) if mine else _dir(-10 * sgn, 50)
            ups.append(_norm(up))
            fas.append(_norm(fa))
        out[side] = (np.stack(ups), np.stack(fas))
    return out


def _legs(st: _State, move: str, key_t: np.ndarray, ks: np.ndarray, amp: float, period: float,
          turn: int) -> None:
    """Write the leg move ``move`` for the beats ``key_t[ks]`` into the channels of ``st``."""
    t = st.t
    if move == "bounce":  # down on every other beat, up between
        heights = np.array([0.92 - (0.10 + 0.08 * amp) * (k % 2 == 0) for k in ks])
        span = (t >= key_t[ks[0]]) & (t <= key_t[ks[-1]])
        st.height[span] = _keyed(t[span], key_t[ks], heights)
        st.lean[span] = 0.15 * (0.92 - st.height[span]) / 0.18
        return
    # a stepping foot lifts just after the previous beat and is down a quarter beat before its own,
    # so its speed peaks mid-beat like the arms' and the body's slowest moment stays on the beat
    swing = 0.9 * period  # s before the beat the foot lifts
    early = 0.25 * period  # s before the beat it is down
    lift = 0.05 + 0.07 * amp
    if move == "march":  # high steps in place, a foot landing on every beat
        for j, k in enumerate(ks[1:], 1):
            land = key_t[k]
            side = "left" if j % 2 else "right"
            sgn = 1.0 if side == "left" else -1.0
            i = min(max(round(land * FPS), 0), st.T - 1)
            target = st.ground[i] + FOOT_W * sgn * np.array([np.cos(st.theta[i]), -np.sin(st.theta[i])])
            _swing_foot(st, side, land - swing, land - early, target, st.theta[i], lift + 0.08 * amp)
    elif move == "step_touch":  # the pelvis moves side to side; the other foot closes in
        side_dir = np.array([1.0, 0.0])  # +x: the body's left at heading 0
        offsets = np.array([(0.12 + 0.08 * amp) * (1 if (k // 2) % 2 == 0 else -1) for k in ks])
        span = (t >= key_t[ks[0]]) & (t <= key_t[ks[-1]])
        shift = _keyed(t[span], key_t[ks], offsets)
        st.ground[span] = shift[:, None] * side_dir
        last = shift[-1] if span.any() else 0.0
        st.ground[t > key_t[ks[-1]]] = last * side_dir
        for j, k in enumerate(ks[1:], 1):
            land = key_t[k]
            going_left = offsets[j] > offsets[j - 1]
            lead = "left" if going_left else "right"
            if offsets[j] == offsets[j - 1]:  # the touch: the trailing foot closes
                lead = "right" if offsets[j] > 0 else "left"
            sgn = 1.0 if lead == "left" else -1.0
            target = offsets[j] * side_dir + FOOT_W * sgn * side_dir
            _swing_foot(st, lead, land - swing, land - early, target, 0.0, lift)
    elif move == "turn":  # a quarter turn every two beats, stepping round
        angles = np.array([np.pi / 2 * (k // 2) * turn for k in ks], dtype=float)
        angles -= angles[0]
        span = (t >= key_t[ks[0]]) & (t <= key_t[ks[-1]])
        base = st.theta[span][0] if span.any() else 0.0
        st.theta[span] = base + _keyed(t[span], key_t[ks], angles)
        st.theta[t > key_t[ks[-1]]] = base + angles[-1]
        for j, k in enumerate(ks[1:], 1):
            land = key_t[k]
            side = "left" if j % 2 else "right"
            sgn = 1.0 if side == "left" else -1.0
            th = base + angles[j]
            target = FOOT_W * sgn * np.array([np.cos(th), -np.sin(th)])
            _swing_foot(st, side, land - swing, land - early, target, th, lift)


def dance_clip(beats: np.ndarray, period: float, moves: list[tuple[str, str]], amp: float,
               frames: int = FRAMES, turn: int = 1) -> Dance:
    """The dance of ``moves`` (one ``(leg, arm)`` per half of the clip) on beat times ``beats``
    (seconds, every ``period`` s; beats before 0 and after the clip are added as keys) with
    amplitude ``amp`` ∈ [0, 1] (how big the moves are)."""
    st = _State(frames)
    for side, sgn in (("left", 1.0), ("right", -1.0)):
        st.foot[side][:] = np.array([FOOT_W * sgn, 0.0])
    first = beats[0] if len(beats) else 0.0
    key_t = first + period * np.arange(-1, int(np.ceil(frames / FPS / period)) + 2)
    key_t = key_t[key_t < frames / FPS + period]
    n = len(key_t)
    half = n // 2
    first, second = _arm_keys(moves[0][1], n, amp), _arm_keys(moves[1][1], n, amp)
    for h, (leg, _) in enumerate(moves):
        ks = np.arange(0, half + 1) if h == 0 else np.arange(half, n)
        _legs(st, leg, key_t, ks, amp, period, turn)
    for side in ("left", "right"):  # the second move's keys follow the first's: no jump at the switch
        for part in (0, 1):
            keys = np.concatenate([first[side][part][:half + 1], second[side][part][half + 1:]])
            st.arms[side][part][:] = _norm(_keyed(st.t, key_t, keys))
    _, _, positions = _pose(st)
    contacts = torch.stack([torch.as_tensor(st.contact[s]) for s in ("left", "right")], -1)
    return Dance(positions, contacts, np.asarray(beats, dtype=np.float32), list(moves))


def random_dance(style: str, beats: np.ndarray, period: float, energy: float, rng: np.random.Generator,
                 frames: int = FRAMES) -> Dance:
    """A dance in ``style``'s vocabulary on ``beats``: a ``(leg, arm)`` move per half, amplitude
    from ``energy`` ∈ [0, 1] with a little jitter."""
    legs, arms = VOCABULARY[style]
    moves = [(legs[rng.integers(len(legs))], arms[rng.integers(len(arms))]) for _ in range(2)]
    amp = float(np.clip(0.35 + 0.55 * energy + rng.normal(0, 0.08), 0.2, 1.0))
    return dance_clip(beats, period, moves, amp, frames, turn=int(rng.choice([-1, 1])))
