"""Procedural human motion: a library of parameterised actions, composable into short sequences.

A clip is one or two :class:`Segment` s. Each segment drives a few per-frame *channels* — the
pelvis ground path and heading, the pelvis height/shift/lean, footsteps, arm directions — and
the legs follow by analytic two-bone inverse kinematics, so a foot in stance stays exactly where
it landed (contact labels come from the footstep plan, and the data has no foot sliding). The
channels live in :mod:`.channels`; :mod:`.pose` turns them into joint rotations and positions
(:func:`~modalities.motion.skeleton.forward_kinematics`).

Every clip starts with the pelvis over the origin, facing ``+z``. ``generate_clip(rng)`` draws
a random clip (deterministic for a seeded ``numpy.random.Generator``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .channels import (
    FPS,
    FRAMES,
    Channels,
    blend_after,
    body_direction,
    heading_vector,
    ramp_window,
    smoother,
    unit,
)
from .pose import channels_to_pose

__all__ = ["ACTIONS", "FPS", "FRAMES", "SPEEDS", "Clip", "Segment", "generate_clip", "render_segments"]

ACTIONS: tuple[str, ...] = ("walk", "run", "jump", "wave", "kick", "squat", "side_step", "turn", "punch",
                            "sit_down")
SPEEDS: tuple[str, ...] = ("slow", "normal", "fast")
PATHS: tuple[str, ...] = ("straight", "curve_left", "curve_right", "circle_left", "circle_right")
LOCOMOTION = ("walk", "run", "side_step", "turn")
FOOT_W = 0.09  # lateral distance of each ankle from the pelvis line
ACCELERATION = 3.0  # m/s²: the pelvis's largest change of ground speed when starting or stopping


@dataclass
class Segment:
    """One action over ``frames`` frames with its parameters (``speed`` ∈ SPEEDS, and per action:
    ``path``, ``side`` (``left``/``right``), ``distance``, ``reps``...)."""

    action: str
    frames: int
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; actions: {', '.join(ACTIONS)}")


@dataclass
class Clip:
    """A generated clip.

    Attributes:
        positions: joint positions ``[T, 22, 3]`` (metres).
        rotations: local joint rotations ``[T, 22, 3, 3]`` (FK of them gives ``positions``).
        root: root (pelvis) positions ``[T, 3]``.
        contacts: foot contact ``[T, 2]`` (left, right) from the footstep plan.
        segments: what was generated.
    """

    positions: torch.Tensor
    rotations: torch.Tensor
    root: torch.Tensor
    contacts: torch.Tensor
    segments: list[Segment]

    @property
    def action(self) -> str:
        """The clip's ``action`` label: its first segment's action."""
        return self.segments[0].action

    @property
    def speed(self) -> str:
        return self.segments[0].params.get("speed", "normal")


_SPEED_SCALE = {"slow": 0.65, "normal": 1.0, "fast": 1.4}


def _plan_steps(st: Channels, lo: int, hi: int, *, period: float, swing: float, lift: float, first: str,
                ground_at, yaw_at, end_time: float) -> None:
    """Alternating footsteps from frame ``lo`` to ``hi``: each foot lifts, swings for ``swing`` s and
    lands where ``ground_at(τ)`` says for the middle of its next stance (τ clamped to ``end_time``)."""
    t0, t1 = lo / FPS, hi / FPS
    order = [first, "right" if first == "left" else "left"]
    stance = 2 * period - swing
    k, lift_t = 0, t0 + 0.1
    while lift_t + swing <= t1 - 0.05:
        side = order[k % 2]
        land_t = lift_t + swing
        tau = min(land_t + stance / 2, end_time)
        if k >= 1 and lift_t + period + swing > t1 - 0.05:
            tau = end_time  # the last step of the pair brings the feet together
        target = ground_at(tau, side)
        yaw = yaw_at(tau)
        swing_foot(st, side, lift_t, land_t, target, yaw, lift)
        k += 1
        lift_t += period
    # a foot that has not stepped since the pelvis stopped takes one more step beside the other
    for side in order:
        end_target = ground_at(end_time, side)
        i_end = min(hi, st.T) - 1
        if np.linalg.norm(st.foot[side][i_end] - end_target) > 0.03 and lift_t + swing <= t1 + 1e-9:
            swing_foot(st, side, lift_t, lift_t + swing, end_target, yaw_at(end_time), lift)
            lift_t += period


def swing_foot(st: Channels, side: str, t_lift: float, t_land: float, target: np.ndarray, yaw: float,
                lift: float, kind: str = "step") -> None:
    """Move ``side``'s foot from where it is at ``t_lift`` to ``target`` by ``t_land``; it stays there."""
    i0 = math.ceil(t_lift * FPS - 1e-9)
    if i0 >= st.T:
        return
    start, yaw0 = st.foot[side][max(i0 - 1, 0)].copy(), st.foot_yaw[side][max(i0 - 1, 0)]
    s = (st.t[i0:] - t_lift) / max(t_land - t_lift, 1e-6)
    flying = s < 1.0
    if kind == "jump":
        h = np.clip(s, 0, 1)
        prog, up = h, lift * 4 * h * (1 - h) + 0.08 * np.sin(np.pi * h)
    else:
        prog, up = smoother(s), lift * np.sqrt(np.clip(np.sin(np.pi * np.clip(s, 0, 1)), 0, 1))
    dyaw = (yaw - yaw0 + np.pi) % (2 * np.pi) - np.pi
    st.foot[side][i0:] = start + prog[:, None] * (target - start)
    st.foot_yaw[side][i0:] = yaw0 + prog * dyaw
    st.lift[side][i0:] = np.where(flying, up, 0.0)
    st.contact[side][i0:] = ~flying


def _integrate_path(st: Channels, lo: int, hi: int, speed: float, omega: float, direction: float) -> None:
    """Pelvis ground path over frames ``lo..hi`` with smooth start/stop: speed ``speed`` (m/s) along
    heading + ``direction``, heading rate ``omega`` (rad/s)."""
    t = st.t[lo:hi]
    # speed up and slow down at most ~3 m/s² (at least 0.35 s): a faster start would leave the
    # planted foot out of the leg's reach and drop the pelvis for a frame
    ramp = ramp_window(t, t[0], t[-1], max(0.35, speed / ACCELERATION))
    dt = 1.0 / FPS
    for i in range(lo, hi):
        prev_th = st.theta[i - 1] if i > 0 else st.theta[0]
        prev_g = st.ground[i - 1] if i > 0 else st.ground[0]
        r = ramp[i - lo]
        st.theta[i] = prev_th + omega * r * dt if i > lo else prev_th
        st.ground[i] = prev_g + speed * r * dt * heading_vector(st.theta[i] + direction) if i > lo else prev_g
    st.theta[hi:] = st.theta[hi - 1]
    st.ground[hi:] = st.ground[hi - 1]


def _side_point(st: Channels, tau: float, side: str) -> np.ndarray:
    i = min(round(tau * FPS), st.T - 1)
    sgn = 1.0 if side == "left" else -1.0
    return st.ground[i] + FOOT_W * sgn * heading_vector(st.theta[i] + np.pi / 2)


def _segment(st: Channels, seg: Segment, lo: int, hi: int, rng: np.random.Generator) -> None:
    """Write one segment's channels over frames ``lo..hi`` (the feet continue from frame ``lo-1``)."""
    p = seg.params
    k = _SPEED_SCALE[p.get("speed", "normal")]
    a = seg.action
    t = st.t[lo:hi]
    tl = t - t[0]
    end_time = (hi - 1) / FPS
    hand = p.get("side", "right")
    sgn = 1.0 if hand == "left" else -1.0

    def ground_at(tau: float, side: str) -> np.ndarray:
        return _side_point(st, tau, side)

    def yaw_at(tau: float) -> float:
        return float(st.theta[min(round(tau * FPS), st.T - 1)])

    if a in LOCOMOTION:
        path = p.get("path", "straight")
        dur = (hi - lo) / FPS
        omega = {"straight": 0.0, "curve_left": 0.5, "curve_right": -0.5,
                 "circle_left": 1.6, "circle_right": -1.6}.get(path, 0.0)
        if a == "walk":
            v, period, swing, lift, amp = 1.0 * k, 0.5 / k ** 0.3, 0.4 / k ** 0.3, 0.11, 1.0
            direction = 0.0
        elif a == "run":
            v, period, swing, lift, amp = 2.6 * k, 0.34 / k ** 0.2, 0.46 / k ** 0.2, 0.2, 1.6
            direction = 0.0
        elif a == "side_step":
            v, period, swing, lift, amp, omega = 0.5 * k, 0.55, 0.42, 0.09, 0.2, 0.0
            direction = np.pi / 2 * sgn
        else:  # turn in place
            angle = p.get("angle", 90) * math.pi / 180 * sgn
            v, period, swing, lift, amp, direction = 0.0, 0.5 / k ** 0.3, 0.38 / k ** 0.3, 0.08, 0.2, 0.0
            omega = angle / max(dur - 0.35, 0.3)
        _integrate_path(st, lo, hi, v, omega, direction)
        first = p.get("first", "left" if (a == "side_step" and hand == "left") else "right")
        if a == "side_step":
            first = hand
        _plan_steps(st, lo, hi, period=period, swing=swing, lift=lift, first=first, ground_at=ground_at,
                    yaw_at=yaw_at, end_time=end_time)
        ramp = ramp_window(t, t[0], t[-1], 0.35)
        st.swing_arms[lo:hi] = amp * ramp * p.get("arm_swing", 1.0)
        if a == "run":
            st.height[lo:hi] = 0.92 - 0.04 * ramp
            st.lean[lo:hi] = 0.15 * ramp
            st.elbow_bend[lo:hi] = 60 * ramp
        else:
            st.height[lo:hi] = 0.92
        return

    # actions in place: the path holds still
    st.ground[lo:] = st.ground[lo - 1] if lo > 0 else st.ground[0]
    st.theta[lo:] = st.theta[lo - 1] if lo > 0 else st.theta[0]
    base_up, base_fa = st.arms[hand]
    if a == "wave":
        freq = 2.0 * k
        raise_t = smoother(tl / 0.4) * smoother((tl[-1] - tl) / 0.4)
        wiggle = 35 * p.get("amplitude", 1.0) * np.sin(2 * np.pi * freq * tl)
        up = body_direction(90 * sgn, 40 * raise_t - 75 * (1 - raise_t))
        fa = body_direction((90 - 20 * raise_t) * sgn + wiggle * raise_t * sgn,
                            80 * raise_t - 60 * (1 - raise_t))
        base_up[lo:hi], base_fa[lo:hi] = unit(up), unit(fa)
    elif a == "punch":
        guard = smoother(tl / 0.3) * smoother((tl[-1] - tl) / 0.3)
        n = p.get("reps", 3)
        punch_t = np.zeros_like(tl)
        hands = np.zeros_like(tl, dtype=int)
        span = (tl[-1] - 0.6) / n
        for r in range(n):
            c = 0.3 + span * (r + 0.5)
            punch_t = np.maximum(punch_t, np.clip(1 - np.abs(tl - c) / (0.22 / k), 0, 1) * (
                (r % 2 == 0) or not p.get("alternate", True)))
            if p.get("alternate", True) and r % 2 == 1:
                hands = np.where(np.abs(tl - c) < 0.22 / k, 1, hands)
        for s_name, s_sgn in (("left", 1.0), ("right", -1.0)):
            up_arr, fa_arr = st.arms[s_name]
            mine = (hands == (0 if s_name == hand else 1))
            ext = np.where(mine, punch_t, 0.0)
            if not p.get("alternate", True) and s_name != hand:
                ext = np.zeros_like(ext)
            up = body_direction(s_sgn * (60 * (1 - ext) + 8 * ext),
                      -70 * (1 - guard) + (-30 * (1 - ext) + 5 * ext) * guard)
            fa = body_direction(s_sgn * (20 * (1 - ext) + 5 * ext),
                      -60 * (1 - guard) + (45 * (1 - ext) + 5 * ext) * guard)
            up_arr[lo:hi], fa_arr[lo:hi] = unit(up), unit(fa)
        st.lean[lo:hi] = 0.1 * guard
    elif a == "squat":
        reps = p.get("reps", 1)
        depth = p.get("depth", 0.35)
        phase = np.clip(tl / tl[-1], 0, 1)
        down = np.sin(np.pi * reps * phase) ** 2
        st.height[lo:hi] = 0.92 - depth * down
        st.shift[lo:hi] = -0.12 * down
        st.lean[lo:hi] = 0.45 * down
        for s_name, s_sgn in (("left", 1.0), ("right", -1.0)):
            up_arr, fa_arr = st.arms[s_name]
            up_arr[lo:hi] = unit(body_direction(s_sgn * (90 - 80 * down), -75 + 75 * down))
            fa_arr[lo:hi] = unit(body_direction(s_sgn * (20 - 15 * down), -60 + 60 * down))
    elif a == "sit_down":
        s = smoother((tl - 0.2) / 1.3)
        st.height[lo:hi] = 0.92 - 0.42 * s
        st.shift[lo:hi] = -0.3 * s
        st.lean[lo:hi] = 0.5 * np.sin(np.pi * s) + 0.1 * s
        for s_name, s_sgn in (("left", 1.0), ("right", -1.0)):
            up_arr, fa_arr = st.arms[s_name]
            up_arr[lo:hi] = unit(body_direction(s_sgn * (90 - 75 * s), -75 + 10 * s))
            fa_arr[lo:hi] = unit(body_direction(s_sgn * (20 - 15 * s), -60 + 30 * s))
    elif a == "jump":
        dist = p.get("distance", 0.0)
        h = 0.25 * k ** 0.5
        flight = 2 * math.sqrt(2 * h / 9.81)
        t_off = t[0] + 0.45
        t_land = t_off + flight
        crouch = 0.18 * (np.exp(-((t - t_off + 0.12) / 0.16) ** 2)
                         + np.exp(-((t - t_land - 0.15) / 0.18) ** 2))
        air = np.clip((t - t_off) / flight, 0, 1)
        st.height[lo:hi] = 0.92 - crouch + np.where((t > t_off) & (t < t_land), h * 4 * air * (1 - air), 0)
        st.lean[lo:hi] = 1.6 * crouch
        g0 = st.ground[lo].copy()
        heading = heading_vector(st.theta[lo])
        st.ground[lo:hi] = g0 + dist * smoother(air)[:, None] * heading
        st.ground[hi:] = st.ground[hi - 1]
        for side in ("left", "right"):
            target = st.foot[side][max(lo - 1, 0)] + dist * heading
            swing_foot(st, side, t_off, t_land, target, st.foot_yaw[side][max(lo - 1, 0)], h, kind="jump")
        swing_up = np.exp(-((t - t_off) / 0.25) ** 2)
        for s_name, s_sgn in (("left", 1.0), ("right", -1.0)):
            up_arr, fa_arr = st.arms[s_name]
            up_arr[lo:hi] = unit(body_direction(s_sgn * (90 - 70 * swing_up), -75 + 110 * swing_up))
            fa_arr[lo:hi] = unit(body_direction(s_sgn * (20 - 10 * swing_up), -60 + 120 * swing_up))
    elif a == "kick":
        t_k = t[0] + 0.5
        dur = 0.8 / k ** 0.3
        foot = hand
        i0 = max(lo - 1, 0)
        swing_foot(st, foot, t_k, t_k + dur, st.foot[foot][i0].copy(), st.foot_yaw[foot][i0], 0.0)
        s = np.clip((st.t - t_k) / dur, 0, 1)
        kick = np.sin(np.pi * s) ** 1.5
        active = (s > 0) & (s < 1)
        st.lift[foot] = np.where(active, 0.55 * p.get("amplitude", 1.0) * kick, st.lift[foot])
        st.forward[foot] = np.where(active, 0.5 * kick, st.forward[foot])
        ks = kick[lo:hi]
        st.lean[lo:hi] = -0.25 * ks
        for s_name, s_sgn in (("left", 1.0), ("right", -1.0)):
            up_arr, fa_arr = st.arms[s_name]
            up_arr[lo:hi] = unit(body_direction(s_sgn * 90, -75 + 60 * ks))
            fa_arr[lo:hi] = unit(body_direction(s_sgn * (20 + 40 * ks), -60 + 50 * ks))


def render_segments(segments: list[Segment], frames: int = FRAMES) -> Clip:
    """Generate the clip of ``segments`` (their frame counts must sum to ``frames``)."""
    total = sum(s.frames for s in segments)
    if total != frames:
        raise ValueError(f"segments cover {total} frames, the clip has {frames}")
    st = Channels(frames)
    for side, sgn in (("left", 1.0), ("right", -1.0)):
        st.foot[side][:] = np.array([FOOT_W * sgn, 0.0])
    rng = np.random.default_rng(0)
    lo = 0
    for seg in segments:
        hi = lo + seg.frames
        _segment(st, seg, lo, hi, rng)
        blend_after(st, lo)
        lo = hi
    local, root, positions = channels_to_pose(st)
    contacts = torch.stack([torch.as_tensor(st.contact[s]) for s in ("left", "right")], -1)
    return Clip(positions, local, root, contacts, segments)


# ---------------------------------------------------------------- random clips
_FIRST = ("walk", "run", "jump", "wave", "kick", "squat", "side_step", "turn", "punch", "sit_down")
_THEN = ("turn", "wave", "punch", "kick", "squat", "jump", "sit_down")


def random_params(action: str, rng: np.random.Generator) -> dict[str, Any]:
    """Random parameters of ``action`` (speed, path, side, reps...)."""
    p: dict[str, Any] = {"speed": SPEEDS[rng.integers(3)], "side": ("left", "right")[rng.integers(2)]}
    if action in ("walk", "run"):
        p["path"] = PATHS[rng.choice(5, p=[0.4, 0.15, 0.15, 0.15, 0.15])]
        p["arm_swing"] = float(rng.uniform(0.5, 1.3))
    if action == "turn":
        p["angle"] = int(rng.choice([90, 180]))
    if action == "jump":
        p["distance"] = float(rng.choice([0.0, 0.0, 0.4, 0.7]))
    if action in ("squat",):
        p["reps"] = int(rng.integers(1, 3))
        p["depth"] = float(rng.uniform(0.25, 0.42))
    if action == "punch":
        p["reps"] = int(rng.integers(2, 5))
        p["alternate"] = bool(rng.integers(2))
    if action in ("wave", "kick"):
        p["amplitude"] = float(rng.uniform(0.7, 1.2))
    return p


def generate_clip(rng: np.random.Generator, frames: int = FRAMES, compose: float = 0.35) -> Clip:
    """A random clip: one action, or (with probability ``compose``) two in sequence."""
    first = _FIRST[rng.integers(len(_FIRST))]
    if first != "sit_down" and rng.random() < compose:
        then = _THEN[rng.integers(len(_THEN))]
        cut = int(rng.integers(frames * 2 // 5, frames * 3 // 5))
        p1 = random_params(first, rng)
        p2 = random_params(then, rng)
        p2["speed"] = p1["speed"]
        segs = [Segment(first, cut, p1), Segment(then, frames - cut, p2)]
    else:
        segs = [Segment(first, frames, random_params(first, rng))]
    return render_segments(segs, frames)
