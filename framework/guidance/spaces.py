"""Prediction spaces and the conversions between them, supplied by each generator family.

Continuous families convert affinely for fixed ``(x_t, t)``: ``T(p) = a_t·x_t + b_t·p``.
A quantity of *mass* ``m`` (1 for a prediction, 0 for a direction) converts as
``a_t·m·x_t + b_t·p``, so directions convert without the ``x_t`` offset. Conversions go
through ``x0`` as a hub.

Discrete families work on ``logits`` and ``logprobs`` (``[B, ..., V]``): a prediction
converts by ``log_softmax``; a direction is unchanged (per-branch normalisers are constant
over the vocabulary, so they cancel under the final softmax).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from framework.core.errors import UserError

__all__ = ["CumprodSchedule", "DiscreteSpaces", "FlowSpaces", "SpaceConverter", "SpaceError", "VPSpaces"]


class SpaceError(UserError, ValueError):
    """A prediction space the family cannot convert to or from."""


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``[B]`` → ``[B, 1, ..., 1]`` matching ``like``."""
    v = torch.as_tensor(v, dtype=like.dtype, device=like.device)
    if v.ndim == 0:
        return v
    return v.reshape(-1, *[1] * (like.ndim - 1))


class SpaceConverter:
    """Converts predictions between the spaces a family supports.

    Subclasses set :attr:`spaces` and implement :meth:`convert`.
    """

    spaces: frozenset[str] = frozenset()
    #: Whether ``-inf`` is a legal prediction value (an excluded token in logit spaces).
    allows_neg_inf: bool = False
    #: The model's valid time inputs ``(lo, hi)``; time-shifted branches (TSG) are clamped to it.
    time_range: tuple[float, float] | None = None

    def convert(self, value: torch.Tensor, src: str, dst: str, *, x: torch.Tensor,
                t: torch.Tensor, mass: float = 1.0) -> torch.Tensor:
        """Convert ``value`` ``[B, ...]`` from ``src`` to ``dst`` at state ``x`` and time ``t`` ``[B]``.

        ``mass`` is the sum of the value's branch coefficients: 1 for a prediction, 0 for a
        direction (which converts without the ``x`` offset).
        """
        raise NotImplementedError

    def _require(self, src: str, dst: str) -> None:
        for s in (src, dst):
            if s not in self.spaces:
                raise SpaceError(
                    f"cannot convert {src!r} → {dst!r}: this family's predictions live in "
                    f"{sorted(self.spaces)}; {s!r} is not one of them")


class _AffineSpaces(SpaceConverter):
    """Continuous spaces with affine maps to and from ``x0``."""

    def to_x0(self, src: str, x: torch.Tensor, t: torch.Tensor) -> tuple:
        """``(a, b)`` with ``x0 = a·x + b·p_src``."""
        raise NotImplementedError

    def from_x0(self, dst: str, x: torch.Tensor, t: torch.Tensor) -> tuple:
        """``(a, b)`` with ``p_dst = a·x + b·x0``."""
        raise NotImplementedError

    def convert(self, value: torch.Tensor, src: str, dst: str, *, x: torch.Tensor,
                t: torch.Tensor, mass: float = 1.0) -> torch.Tensor:
        if src == dst:
            return value
        self._require(src, dst)
        a1, b1 = self.to_x0(src, x, t)
        a2, b2 = self.from_x0(dst, x, t)
        offset = (a2 + b2 * a1) * mass
        out = b2 * b1 * value
        return out if mass == 0.0 else out + offset * x


class CumprodSchedule:
    """``t ↦ (√ᾱ_t, √(1 − ᾱ_t))`` for integer timesteps ``t`` (picklable, unlike a closure)."""

    def __init__(self, alphas_cumprod: torch.Tensor) -> None:
        self.alphas_cumprod = alphas_cumprod.double()

    def __call__(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.alphas_cumprod.to(t.device)[t.long()]
        return a.sqrt(), (1 - a).sqrt()


class VPSpaces(_AffineSpaces):
    """Diffusion ``x_t = α_t·x0 + σ_t·ε``: spaces ``eps``, ``x0``, ``v``, ``score``.

    ``v = α_t·ε − σ_t·x0`` and ``score = −ε/σ_t``. ``alpha_sigma(t)`` returns ``(α_t, σ_t)``
    as ``[B]`` tensors for the model's time input ``t``.
    """

    spaces = frozenset({"eps", "x0", "v", "score"})

    def __init__(self, alpha_sigma: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                 time_range: tuple[float, float] | None = None):
        self.alpha_sigma = alpha_sigma
        self.time_range = time_range

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod: torch.Tensor) -> VPSpaces:
        """For integer timesteps indexing a (diffusers) scheduler's ``alphas_cumprod``."""
        return cls(CumprodSchedule(alphas_cumprod), time_range=(0, len(alphas_cumprod) - 1))

    def _as(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, s = self.alpha_sigma(t)
        return _bcast(a, x), _bcast(s, x)

    def to_x0(self, src, x, t):
        a, s = self._as(x, t)
        if src == "x0":
            return 0.0, 1.0
        if src == "eps":  # x0 = (x − σε)/α
            return 1 / a, -s / a
        if src == "v":  # x0 = (αx − σv)/(α²+σ²)
            n = a * a + s * s
            return a / n, -s / n
        if src == "score":  # ε = −σ·score
            return 1 / a, s * s / a
        raise AssertionError(src)

    def from_x0(self, dst, x, t):
        a, s = self._as(x, t)
        if dst == "x0":
            return 0.0, 1.0
        if dst == "eps":  # ε = (x − α·x0)/σ
            return 1 / s, -a / s
        if dst == "v":  # v = αε − σx0 = (αx − (α²+σ²)x0)/σ
            return a / s, -(a * a + s * s) / s
        if dst == "score":  # score = −(x − α·x0)/σ²
            return -1 / (s * s), a / (s * s)
        raise AssertionError(dst)


class FlowSpaces(_AffineSpaces):
    """Rectified flow ``x_t = (1 − t)·x0 + t·ε`` with velocity ``flow_v = ε − x0``.

    Spaces ``flow_v``, ``x0``, ``eps``, ``score`` (``score = −ε/t``); ``t = 1`` is noise.
    """

    spaces = frozenset({"flow_v", "x0", "eps", "score"})
    time_range = (0.0, 1.0)

    def to_x0(self, src, x, t):
        t = _bcast(t, x)
        if src == "x0":
            return 0.0, 1.0
        if src == "flow_v":  # x0 = x − t·v
            return 1.0, -t
        if src == "eps":  # x0 = (x − t·ε)/(1 − t)
            return 1 / (1 - t), -t / (1 - t)
        if src == "score":  # ε = −t·score
            return 1 / (1 - t), t * t / (1 - t)
        raise AssertionError(src)

    def from_x0(self, dst, x, t):
        t = _bcast(t, x)
        if dst == "x0":
            return 0.0, 1.0
        if dst == "flow_v":  # v = (x − x0)/t
            return 1 / t, -1 / t
        if dst == "eps":  # ε = (x − (1 − t)·x0)/t
            return 1 / t, -(1 - t) / t
        if dst == "score":
            return -1 / (t * t), (1 - t) / (t * t)
        raise AssertionError(dst)


class DiscreteSpaces(SpaceConverter):
    """Token models: ``logits`` and ``logprobs`` over the last dimension.

    ``-inf`` marks a token that may not be chosen (constrained decoding); see
    :func:`framework.guidance.expr.combine_excluding` for how guidance combines it.
    """

    spaces = frozenset({"logits", "logprobs"})
    allows_neg_inf = True

    def convert(self, value: torch.Tensor, src: str, dst: str, *, x: torch.Tensor,
                t: torch.Tensor, mass: float = 1.0) -> torch.Tensor:
        if src == dst:
            return value
        self._require(src, dst)
        if dst == "logprobs" and mass != 0.0:
            out = torch.log_softmax(value, dim=-1, dtype=torch.float32)  # in float32 whatever the input
            return out if out.dtype == value.dtype else out.to(value.dtype)
        return value
