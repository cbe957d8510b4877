"""Template captions with paraphrases for generated clips ("a person walks forward, then waves")."""

from __future__ import annotations

import numpy as np

from .actions import Segment

__all__ = ["caption"]

_SUBJECTS = ("a person", "someone", "a man", "a woman", "the person", "a figure")
_STYLE = {"slow": ("slowly", "calmly", "gently"), "normal": ("",),
          "fast": ("quickly", "energetically", "briskly")}
_PATH = {
    "straight": ("forward", "straight ahead", "in a straight line"),
    "curve_left": ("along a curve to the left", "veering left", "on a path bending left"),
    "curve_right": ("along a curve to the right", "veering right", "on a path bending right"),
    "circle_left": ("in a circle to the left", "in a counter-clockwise circle", "around in a circle"),
    "circle_right": ("in a circle to the right", "in a clockwise circle", "around in a circle"),
}


def _phrase(seg: Segment, rng: np.random.Generator) -> str:
    p, a = seg.params, seg.action
    side = p.get("side", "right")
    pick = lambda opts: opts[rng.integers(len(opts))]
    if a in ("walk", "run"):
        verb = pick(("walks", "strolls", "is walking")) if a == "walk" else pick(("runs", "jogs", "sprints"))
        return f"{verb} {pick(_PATH[p.get('path', 'straight')])}"
    if a == "side_step":
        return pick((f"side-steps to the {side}", f"steps sideways to the {side}", f"shuffles to the {side}"))
    if a == "turn":
        angle = p.get("angle", 90)
        around = "turns around" if angle == 180 else f"turns {side}"
        return pick((f"{around} in place", around, f"turns {'all the way' if angle == 180 else 'to the'} "
                                                   f"{'around' if angle == 180 else side}"))
    if a == "jump":
        if p.get("distance", 0.0) > 0:
            return pick(("jumps forward", "leaps forward", "hops ahead"))
        return pick(("jumps in place", "jumps up", "hops on the spot"))
    if a == "wave":
        return pick((f"waves with the {side} hand", "waves", f"raises the {side} hand and waves"))
    if a == "punch":
        return pick(("punches", "throws punches", "boxes in the air", "punches forward"))
    if a == "kick":
        return pick((f"kicks with the {side} leg", "kicks", f"kicks forward with the {side} foot"))
    if a == "squat":
        return pick(("squats", "does a squat", "crouches down and stands up"))
    return pick(("sits down", "sits down on the floor", "lowers into a seat"))


def caption(segments: list[Segment], rng: np.random.Generator) -> str:
    """A caption of the clip's segments, e.g. ``"someone walks forward slowly, then waves"``."""
    subject = _SUBJECTS[rng.integers(len(_SUBJECTS))]
    parts = [_phrase(s, rng) for s in segments]
    style = _STYLE[segments[0].params.get("speed", "normal")]
    word = style[rng.integers(len(style))]
    if word and rng.random() < 0.8:
        parts[0] = f"{parts[0]} {word}" if rng.random() < 0.5 else f"{word} {parts[0]}"
    link = (", then ", " and then ", ", after that ")[rng.integers(3)]
    return subject + " " + link.join(parts)
