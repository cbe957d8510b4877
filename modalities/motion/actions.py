"""Procedural human motion: a library of parameterised actions, composable into short sequences.

A clip is one or two :class:`Segment` s. Each segment drives a few per-frame *channels* — the
pelvis ground path and heading, the pelvis height/shift/lean, footsteps, arm directions — and
the legs follow by analytic two-bone inverse kinematics, so a foot in stance stays exactly where
it landed (contact labels come from the footstep plan, and the data has no foot sliding). Joint
rotations go through :func:`~modalities.motion.skeleton.forward_kinematics`.

Every clip starts with the pelvis over the origin, facing ``+z``. ``generate_clip(rng)`` draws
a random clip (deterministic for a seeded ``numpy.random.Generator``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .skeleton import ANKLE_HEIGHT, OFFSETS, SHIN, THIGH, forward_kinematics, rot_x, rot_y, rotation_between

__all__ = ["ACTIONS", "FPS", "FRAMES", "SPEEDS", "Clip", "Segment", "generate_clip", "render_segments"]

FPS = 20
FRAMES = 64  # 3.2 s
ACTIONS: tuple[str, ...] = ("walk", "run", "jump", "wave", "kick", "squat", "side_step", "turn", "punch",
                            "sit_down")
SPEEDS: tuple[str, ...] = ("slow", "normal", "fast")
PATHS: tuple[str, ...] = ("straight", "curve_left", "curve_right", "circle_left", "circle_right")
LOCOMOTION = ("walk", "run", "side_step", "turn")
FOOT_W = 0.09  # lateral distance of each ankle from the pelvis line
REACH = 0.995 * (THIGH + SHIN)
BLEND = 0.3  # seconds of cross-fade between segments' poses
DIP_RATE = 0.02  # metres a frame: how fast the pelvis may dip to keep a planted foot in reach
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


def _smoother(s: np.ndarray) -> np.ndarray:
    s = np.clip(s, 0.0, 1.0)
    return s * s * s * (s * (6 * s - 15) + 10)


def _ramp(t: np.ndarray, t0: float, t1: float, width: float) -> np.ndarray:
    """1 inside ``[t0, t1]`` with smooth ``width``-second ramps at both ends, 0 outside."""
    up = _smoother((t - t0) / width)
    down = _smoother((t1 - t) / width)
    return up * down


def _heading(theta: float) -> np.ndarray:
    """Unit ground vector ``(x, z)`` of heading ``theta`` (0 = ``+z``, positive turns left to ``+x``)."""
    return np.array([math.sin(theta), math.cos(theta)])


def _dir(yaw_deg: float | np.ndarray, pitch_deg: float | np.ndarray) -> np.ndarray:
    """Body-frame unit direction from a yaw (about ``y``, 0 = forward, 90 = left) and pitch (up +)."""
    yaw, pitch = np.radians(yaw_deg), np.radians(pitch_deg)
    return np.stack(np.broadcast_arrays(np.sin(yaw) * np.cos(pitch), np.sin(pitch),
                                        np.cos(yaw) * np.cos(pitch)), -1)


class _State:
    """Per-frame channels of a clip being built (all numpy arrays of length ``T``)."""

    def __init__(self, T: int) -> None:
        self.T = T
        self.t = np.arange(T) / FPS
        self.ground = np.zeros((T, 2))  # pelvis ground path (x, z)
        self.theta = np.zeros(T)  # heading
        self.height = np.full(T, 0.92)  # desired pelvis height (reach-limited later)
        self.shift = np.zeros(T)  # pelvis shift along the heading (squat, sit)
        self.lean = np.zeros(T)  # spine pitch forward (+) in radians
        self.pelvis_pitch = np.zeros(T)
        self.arms = {s: (np.tile(_dir(90 * sgn, -75), (T, 1)), np.tile(_dir(20 * sgn, -60), (T, 1)))
                     for s, sgn in (("left", 1), ("right", -1))}  # upper arm, forearm body-frame dirs
        self.swing_arms = np.zeros(T)  # amplitude of gait-driven arm swing
        self.elbow_bend = np.zeros(T)  # extra forearm pitch during the gait (running arms)
        # feet: ground (x, z), yaw, lift height, contact
        self.foot = {s: np.zeros((T, 2)) for s in ("left", "right")}
        self.foot_yaw = {s: np.zeros(T) for s in ("left", "right")}
        self.lift = {s: np.zeros(T) for s in ("left", "right")}
        self.forward = {s: np.zeros(T) for s in ("left", "right")}  # kick: ankle pushed forward
        self.contact = {s: np.ones(T, dtype=bool) for s in ("left", "right")}


_SPEED_SCALE = {"slow": 0.65, "normal": 1.0, "fast": 1.4}


def _plan_steps(st: _State, lo: int, hi: int, *, period: float, swing: float, lift: float, first: str,
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
        _swing_foot(st, side, lift_t, land_t, target, yaw, lift)
        k += 1
        lift_t += period
    # a foot that has not stepped since the pelvis stopped takes one more step beside the other
    for side in order:
        end_target = ground_at(end_time, side)
        i_end = min(hi, st.T) - 1
        if np.linalg.norm(st.foot[side][i_end] - end_target) > 0.03 and lift_t + swing <= t1 + 1e-9:
            _swing_foot(st, side, lift_t, lift_t + swing, end_target, yaw_at(end_time), lift)
            lift_t += period


def _swing_foot(st: _State, side: str, t_lift: float, t_land: float, target: np.ndarray, yaw: float,
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
        prog, up = _smoother(s), lift * np.sqrt(np.clip(np.sin(np.pi * np.clip(s, 0, 1)), 0, 1))
    dyaw = (yaw - yaw0 + np.pi) % (2 * np.pi) - np.pi
    st.foot[side][i0:] = start + prog[:, None] * (target - start)
    st.foot_yaw[side][i0:] = yaw0 + prog * dyaw
    st.lift[side][i0:] = np.where(flying, up, 0.0)
    st.contact[side][i0:] = ~flying


def _integrate_path(st: _State, lo: int, hi: int, speed: float, omega: float, direction: float) -> None:
    """Pelvis ground path over frames ``lo..hi`` with smooth start/stop: speed ``speed`` (m/s) along
    heading + ``direction``, heading rate ``omega`` (rad/s)."""
    t = st.t[lo:hi]
    # speed up and slow down at most ~3 m/s² (at least 0.35 s): a faster start would leave the
    # planted foot out of the leg's reach and drop the pelvis for a frame
    ramp = _ramp(t, t[0], t[-1], max(0.35, speed / ACCELERATION))
    dt = 1.0 / FPS
    for i in range(lo, hi):
        prev_th = st.theta[i - 1] if i > 0 else st.theta[0]
        prev_g = st.ground[i - 1] if i > 0 else st.ground[0]
        r = ramp[i - lo]
        st.theta[i] = prev_th + omega * r * dt if i > lo else prev_th
        st.ground[i] = prev_g + speed * r * dt * _heading(st.theta[i] + direction) if i > lo else prev_g
    st.theta[hi:] = st.theta[hi - 1]
    st.ground[hi:] = st.ground[hi - 1]


def _side_point(st: _State, tau: float, side: str) -> np.ndarray:
    i = min(round(tau * FPS), st.T - 1)
    sgn = 1.0 if side == "left" else -1.0
    return st.ground[i] + FOOT_W * sgn * _heading(st.theta[i] + np.pi / 2)


def _segment(st: _State, seg: Segment, lo: int, hi: int, rng: np.random.Generator) -> None:
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
        ramp = _ramp(t, t[0], t[-1], 0.35)
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
        raise_t = _smoother(tl / 0.4) * _smoother((tl[-1] - tl) / 0.4)
        wiggle = 35 * p.get("amplitude", 1.0) * np.sin(2 * np.pi * freq * tl)
        up = _dir(90 * sgn, 40 * raise_t - 75 * (1 - raise_t))
        fa = _dir((90 - 20 * raise_t) * sgn + wiggle * raise_t * sgn, 80 * raise_t - 60 * (1 - raise_t))
        base_up[lo:hi], base_fa[lo:hi] = _norm(up), _norm(fa)
    elif a == "punch":
        guard = _smoother(tl / 0.3) * _smoother((tl[-1] - tl) / 0.3)
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
            up = _dir(s_sgn * (60 * (1 - ext) + 8 * ext),
                      -70 * (1 - guard) + (-30 * (1 - ext) + 5 * ext) * guard)
            fa = _dir(s_sgn * (20 * (1 - ext) + 5 * ext),
                      -60 * (1 - guard) + (45 * (1 - ext) + 5 * ext) * guard)
            up_arr[lo:hi], fa_arr[lo:hi] = _norm(up), _norm(fa)
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
            up_arr[lo:hi] = _norm(_dir(s_sgn * (90 - 80 * down), -75 + 75 * down))
            fa_arr[lo:hi] = _norm(_dir(s_sgn * (20 - 15 * down), -60 + 60 * down))
    elif a == "sit_down":
        s = _smoother((tl - 0.2) / 1.3)
        st.height[lo:hi] = 0.92 - 0.42 * s
        st.shift[lo:hi] = -0.3 * s
        st.lean[lo:hi] = 0.5 * np.sin(np.pi * s) + 0.1 * s
        for s_name, s_sgn in (("left", 1.0), ("right", -1.0)):
            up_arr, fa_arr = st.arms[s_name]
            up_arr[lo:hi] = _norm(_dir(s_sgn * (90 - 75 * s), -75 + 10 * s))
            fa_arr[lo:hi] = _norm(_dir(s_sgn * (20 - 15 * s), -60 + 30 * s))
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
        heading = _heading(st.theta[lo])
        st.ground[lo:hi] = g0 + dist * _smoother(air)[:, None] * heading
        st.ground[hi:] = st.ground[hi - 1]
        for side in ("left", "right"):
            target = st.foot[side][max(lo - 1, 0)] + dist * heading
            _swing_foot(st, side, t_off, t_land, target, st.foot_yaw[side][max(lo - 1, 0)], h, kind="jump")
        swing_up = np.exp(-((t - t_off) / 0.25) ** 2)
        for s_name, s_sgn in (("left", 1.0), ("right", -1.0)):
            up_arr, fa_arr = st.arms[s_name]
            up_arr[lo:hi] = _norm(_dir(s_sgn * (90 - 70 * swing_up), -75 + 110 * swing_up))
            fa_arr[lo:hi] = _norm(_dir(s_sgn * (20 - 10 * swing_up), -60 + 120 * swing_up))
    elif a == "kick":
        t_k = t[0] + 0.5
        dur = 0.8 / k ** 0.3
        foot = hand
        i0 = max(lo - 1, 0)
        _swing_foot(st, foot, t_k, t_k + dur, st.foot[foot][i0].copy(), st.foot_yaw[foot][i0], 0.0)
        s = np.clip((st.t - t_k) / dur, 0, 1)
        kick = np.sin(np.pi * s) ** 1.5
        active = (s > 0) & (s < 1)
        st.lift[foot] = np.where(active, 0.55 * p.get("amplitude", 1.0) * kick, st.lift[foot])
        st.forward[foot] = np.where(active, 0.5 * kick, st.forward[foot])
        ks = kick[lo:hi]
        st.lean[lo:hi] = -0.25 * ks
        for s_name, s_sgn in (("left", 1.0), ("right", -1.0)):
            up_arr, fa_arr = st.arms[s_name]
            up_arr[lo:hi] = _norm(_dir(s_sgn * 90, -75 + 60 * ks))
            fa_arr[lo:hi] = _norm(_dir(s_sgn * (20 + 40 * ks), -60 + 50 * ks))


def _norm(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _blend_after(st: _State, lo: int) -> None:
    """Cross-fade pose channels from their value at ``lo - 1`` into the new segment's values."""
    n = int(BLEND * FPS)
    w = _smoother((np.arange(st.T - lo) + 1) / (n + 1))[:n]
    if lo <= 0 or len(w) == 0:
        return
    sl = slice(lo, lo + len(w))
    for arr in (st.height, st.shift, st.lean, st.swing_arms, st.elbow_bend):
        arr[sl] = arr[lo - 1] + w * (arr[sl] - arr[lo - 1])
    for up, fa in st.arms.values():
        for v in (up, fa):
            v[sl] = _norm(v[lo - 1] + w[:, None] * (v[sl] - v[lo - 1]))


def _two_bone(hip: torch.Tensor, target: torch.Tensor, pole: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Analytic leg IK: global rotations ``[T, 3, 3]`` of hip and knee so that the ankle reaches
    ``target`` (clamped to the leg's reach), the knee bending towards ``pole`` (``[T, 3]`` each)."""
    a = target - hip
    dist = a.norm(dim=-1, keepdim=True).clamp(0.05, REACH)
    a_hat = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    s = torch.cross(pole, a_hat, dim=-1)
    s = s / s.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    u = torch.cross(a_hat, s, dim=-1)
    cos_a = ((THIGH ** 2 + dist ** 2 - SHIN ** 2) / (2 * THIGH * dist)).clamp(-1, 1)
    knee = hip + THIGH * (cos_a * a_hat + (1 - cos_a ** 2).sqrt() * u)
    ankle = hip + dist * a_hat
    d1 = (knee - hip) / THIGH
    d2 = (ankle - knee) / (ankle - knee).norm(dim=-1, keepdim=True)

    def frame(d: torch.Tensor) -> torch.Tensor:
        y = -d
        x = s - (s * y).sum(-1, keepdim=True) * y
        x = x / x.norm(dim=-1, keepdim=True)
        return torch.stack([x, y, torch.cross(x, y, dim=-1)], -1)  # columns

    return frame(d1), frame(d2)


def _pose(st: _State) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Channels → local rotations ``[T, 22, 3, 3]``, root positions ``[T, 3]`` and positions."""
    T = st.T
    f = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float32)
    theta = f(st.theta)
    yaw = rot_y(theta)
    pelvis_rot = yaw @ rot_x(f(st.pelvis_pitch))
    fwd = torch.stack([torch.sin(theta), torch.zeros(T), torch.cos(theta)], -1)
    ground = f(st.ground)
    root_xz = ground + f(st.shift)[:, None] * fwd[:, [0, 2]]
    targets, poles = {}, {}
    for side in ("left", "right"):
        g, lift, fw = f(st.foot[side]), f(st.lift[side]), f(st.forward[side])
        fyaw = f(st.foot_yaw[side])
        ffwd = torch.stack([torch.sin(fyaw), torch.zeros(T), torch.cos(fyaw)], -1)
        targets[side] = torch.stack([g[:, 0], ANKLE_HEIGHT + lift, g[:, 1]], -1) + fw[:, None] * ffwd
        p = fwd + ffwd
        poles[side] = p / p.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    # pelvis height: as wished, but low enough that every planted foot is within the leg's reach
    hip_off = {side: (pelvis_rot @ OFFSETS[j][:, None])[..., 0] for side, j in (("left", 1), ("right", 2))}
    height = f(st.height)
    for side in ("left", "right"):
        hip_xz = root_xz + hip_off[side][:, [0, 2]]
        horiz = (targets[side][:, [0, 2]] - hip_xz).norm(dim=-1)
        reach_up = (REACH ** 2 - horiz.clamp(max=REACH * 0.999) ** 2).sqrt()
        limit = targets[side][:, 1] + reach_up - hip_off[side][:, 1]
        planted = f(st.contact[side]).bool()
        height = torch.where(planted, torch.minimum(height, limit - 0.002), height)
    # the pelvis dips and recovers at most DIP_RATE a frame: widen each dip (lowering is always in reach)
    dip = f(st.height) - height
    for i in range(1, T):
        dip[i] = torch.maximum(dip[i], dip[i - 1] - DIP_RATE)
    for i in range(T - 2, -1, -1):
        dip[i] = torch.maximum(dip[i], dip[i + 1] - DIP_RATE)
    height = f(st.height) - dip
    root = torch.stack([root_xz[:, 0], height, root_xz[:, 1]], -1)
    local = torch.eye(3).repeat(T, 22, 1, 1)
    local[:, 0] = pelvis_rot
    lean = f(st.lean)
    for j in (3, 6, 9):
        local[:, j] = rot_x(lean / 3)
    local[:, 12] = rot_x(-lean * 0.4)
    local[:, 15] = rot_x(-lean * 0.3)
    glob_spine3 = pelvis_rot @ local[:, 3] @ local[:, 6] @ local[:, 9]
    # legs
    for side, (hj, kj, aj) in (("left", (1, 4, 7)), ("right", (2, 5, 8))):
        hip = root + hip_off[side]
        r_hip, r_knee = _two_bone(hip, targets[side], poles[side])
        r_foot = rot_y(f(st.foot_yaw[side]))
        local[:, hj] = pelvis_rot.transpose(-1, -2) @ r_hip
        local[:, kj] = r_hip.transpose(-1, -2) @ r_knee
        local[:, aj] = r_knee.transpose(-1, -2) @ r_foot
    # arms: gait-driven swing (opposite to the same-side leg) on top of the channel directions
    left_fwd = _ankle_forward(targets["left"], root, theta)
    right_fwd = _ankle_forward(targets["right"], root, theta)
    for side, (sj, ej), sgn, other in (("left", (16, 18), 1.0, right_fwd),
                                       ("right", (17, 19), -1.0, left_fwd)):
        up, fa = (f(x) for x in st.arms[side])
        swing = f(st.swing_arms) * (other / 0.3).clamp(-1, 1) * 0.5  # radians
        up = (rot_x(-swing) @ up[..., None])[..., 0]  # forward swing: rotate the arm towards +z
        bend = torch.deg2rad(f(st.elbow_bend) + 25 * f(st.swing_arms).clamp(max=1)) * 0.6
        fa = (rot_x(-(swing + bend)) @ fa[..., None])[..., 0]
        w_up = (yaw @ up[..., None])[..., 0]
        w_fa = (yaw @ fa[..., None])[..., 0]
        rest = torch.tensor([sgn, 0.0, 0.0]).expand(T, 3)
        g_sh = rotation_between(rest, w_up)
        g_el = rotation_between(rest, w_fa)
        local[:, sj] = glob_spine3.transpose(-1, -2) @ g_sh  # collars keep the identity
        local[:, ej] = g_sh.transpose(-1, -2) @ g_el
    positions, _ = forward_kinematics(local, root)
    return local, root, positions


def _ankle_forward(target: torch.Tensor, root: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """How far an ankle target is ahead of the pelvis along the heading ``[T]``."""
    d = target - root
    return d[:, 0] * torch.sin(theta) + d[:, 2] * torch.cos(theta)


def render_segments(segments: list[Segment], frames: int = FRAMES) -> Clip:
    """Generate the clip of ``segments`` (their frame counts must sum to ``frames``)."""
    total = sum(s.frames for s in segments)
    if total != frames:
        raise ValueError(f"segments cover {total} frames, the clip has {frames}")
    st = _State(frames)
    for side, sgn in (("left", 1.0), ("right", -1.0)):
        st.foot[side][:] = np.array([FOOT_W * sgn, 0.0])
    rng = np.random.default_rng(0)
    lo = 0
    for seg in segments:
        hi = lo + seg.frames
        _segment(st, seg, lo, hi, rng)
        _blend_after(st, lo)
        lo = hi
    local, root, positions = _pose(st)
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
