"""The per-frame channels a procedural motion clip is built from (:class:`Channels`): the pelvis
ground path and heading, the pelvis height/shift/lean, footsteps and arm directions, with the
small helpers that shape them (smooth ramps, body-frame directions, the cross-fade between
segments). :mod:`.actions` fills them per action; :mod:`.pose` turns them into a skeleton pose.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["BLEND", "FPS", "FRAMES", "Channels", "blend_after", "body_direction", "heading_vector",
           "ramp_window", "smoother", "unit"]

FPS = 20
FRAMES = 64  # 3.2 s
BLEND = 0.3  # seconds of cross-fade between segments' poses


def smoother(s: np.ndarray) -> np.ndarray:
    s = np.clip(s, 0.0, 1.0)
    return s * s * s * (s * (6 * s - 15) + 10)


def ramp_window(t: np.ndarray, t0: float, t1: float, width: float) -> np.ndarray:
    """1 inside ``[t0, t1]`` with smooth ``width``-second ramps at both ends, 0 outside."""
    up = smoother((t - t0) / width)
    down = smoother((t1 - t) / width)
    return up * down


def heading_vector(theta: float) -> np.ndarray:
    """Unit ground vector ``(x, z)`` of heading ``theta`` (0 = ``+z``, positive turns left to ``+x``)."""
    return np.array([math.sin(theta), math.cos(theta)])


def body_direction(yaw_deg: float | np.ndarray, pitch_deg: float | np.ndarray) -> np.ndarray:
    """Body-frame unit direction from a yaw (about ``y``, 0 = forward, 90 = left) and pitch (up +)."""
    yaw, pitch = np.radians(yaw_deg), np.radians(pitch_deg)
    return np.stack(np.broadcast_arrays(np.sin(yaw) * np.cos(pitch), np.sin(pitch),
                                        np.cos(yaw) * np.cos(pitch)), -1)


class Channels:
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
        # upper arm, forearm body-frame directions
        self.arms = {s: (np.tile(body_direction(90 * sgn, -75), (T, 1)),
                         np.tile(body_direction(20 * sgn, -60), (T, 1)))
                     for s, sgn in (("left", 1), ("right", -1))}
        self.swing_arms = np.zeros(T)  # amplitude of gait-driven arm swing
        self.elbow_bend = np.zeros(T)  # extra forearm pitch during the gait (running arms)
        # feet: ground (x, z), yaw, lift height, contact
        self.foot = {s: np.zeros((T, 2)) for s in ("left", "right")}
        self.foot_yaw = {s: np.zeros(T) for s in ("left", "right")}
        self.lift = {s: np.zeros(T) for s in ("left", "right")}
        self.forward = {s: np.zeros(T) for s in ("left", "right")}  # kick: ankle pushed forward
        self.contact = {s: np.ones(T, dtype=bool) for s in ("left", "right")}


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def blend_after(st: Channels, lo: int) -> None:
    """Cross-fade pose channels from their value at ``lo - 1`` into the new segment's values."""
    n = int(BLEND * FPS)
    w = smoother((np.arange(st.T - lo) + 1) / (n + 1))[:n]
    if lo <= 0 or len(w) == 0:
        return
    sl = slice(lo, lo + len(w))
    for arr in (st.height, st.shift, st.lean, st.swing_arms, st.elbow_bend):
        arr[sl] = arr[lo - 1] + w * (arr[sl] - arr[lo - 1])
    for up, fa in st.arms.values():
        for v in (up, fa):
            v[sl] = unit(v[lo - 1] + w[:, None] * (v[sl] - v[lo - 1]))
