"""Conditions: named specs with null kinds, and batches with per-sample presence.

One mechanism serves training and sampling: a :class:`Conditions` batch carries, per
condition, a value tensor and a per-sample *present* mask. The network's conditioner
(:class:`framework.nn.conditioner.Conditioner`) substitutes each condition's null wherever a
sample's condition is absent. Training drops conditions per sample
(:class:`framework.core.dropout.DropoutSpec`); guidance branches set the masks.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from framework.core.errors import UserError

__all__ = ["ConditionError", "ConditionSpec", "Conditions", "unknown_error"]

NullKind = Literal["learned", "zeros", "mask"]
CondKind = Literal["categorical", "vector", "sequence", "scalar"]


class ConditionError(UserError, ValueError):
    """A condition name, value or shape that does not fit the model."""


def unknown_error(kind: str, name: Any, valid: Iterable[str]) -> ConditionError:
    """``unknown <kind> <name>``, the closest valid name suggested, the valid ones listed."""
    valid = sorted(valid)
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f" — did you mean {close[0]!r}?" if close else ""
    return ConditionError(f"unknown {kind} {name!r}{hint} Valid: {', '.join(map(str, valid)) or '(none)'}")


@dataclass(frozen=True)
class ConditionSpec:
    """One named condition of a model.

    Attributes:
        name: e.g. ``"text"``, ``"shape"``.
        kind: ``categorical`` (an int label per sample, value ``[B]``), ``vector`` (``[B, dim]``),
            ``sequence`` (``[B, L, dim]``) or ``scalar`` (one real number per sample, value ``[B]``
            float; e.g. the guidance weight ``w`` a distilled student takes as input, so
            ``cond(shape, w=4)`` and ``--cond w=4`` set it).
        labels: for categorical conditions, the label names (``"red"`` → its index).
        dim: feature size of vector/sequence conditions.
        null: ``learned`` (a trained null embedding, the default), ``zeros``, or ``mask``
            (a mask token; needs no dropout, the masking objective covers it).
        encoder: the name of a registered encoder that turns raw text values (captions, file paths)
            into the condition's values (``list[str] -> [n, dim]``, ``[n, L, dim]``, or ``[n]`` for a
            scalar): ``"minilm"`` for captions, or ``"<modality>/<name>"`` for one a plugin registers
            (:mod:`framework.core.encoders`). Not for categorical conditions (their labels are the text).
        positions: for sequence conditions, append sinusoidal features of each element's index
            (:func:`position_features`) before embedding it. Without them cross-attention sees the
            sequence as an unordered set: a melody's chroma frames in any order give the same
            output. ``False`` by default, so specs saved before the field existed load unchanged.
    """

    name: str
    kind: CondKind = "categorical"
    labels: tuple[str, ...] | None = None
    dim: int | None = None
    null: NullKind = "learned"
    encoder: str | None = None
    positions: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("categorical", "vector", "sequence", "scalar"):
            raise ConditionError(f"condition {self.name!r}: unknown kind {self.kind!r}")
        if self.null not in ("learned", "zeros", "mask"):
            raise ConditionError(f"condition {self.name!r}: unknown null kind {self.null!r}; "
                                 f"use 'learned', 'zeros' or 'mask'")
        if self.kind == "categorical" and not self.labels:
            raise ConditionError(f"categorical condition {self.name!r} needs labels")
        if self.kind == "categorical" and self.encoder:
            raise ConditionError(f"categorical condition {self.name!r} takes no encoder (its labels name "
                                 f"its values); use kind vector, sequence or scalar for an encoded value")
        if self.kind in ("vector", "sequence") and not self.dim:
            raise ConditionError(f"{self.kind} condition {self.name!r} needs dim")
        if self.kind == "scalar" and (self.labels or self.dim):
            raise ConditionError(f"scalar condition {self.name!r} takes no labels or dim")
        if not isinstance(self.positions, bool):
            raise ConditionError(f"condition {self.name!r}: positions must be true or false, "
                                 f"got {self.positions!r}")
        if self.positions and self.kind != "sequence":
            raise ConditionError(f"condition {self.name!r}: positions apply to sequence conditions "
                                 f"only, not {self.kind}")
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(str(x) for x in self.labels))
        if self.encoder is not None:
            from framework.core.encoders import EncoderError, check_name

            try:
                check_name(self.encoder)
            except EncoderError as e:
                raise ConditionError(f"condition {self.name!r}: {e}") from None

    @property
    def needs_dropout(self) -> bool:
        """Whether the null must be learned through condition dropout."""
        return self.null != "mask"

    def encode(self, raw: Any, n: int) -> torch.Tensor:
        """Turn one raw value (a label, an int, a tensor) or a per-sample list into a value batch.

        Returns ``[n]`` long for categorical, ``[n]`` float for scalar, ``[n, dim]`` /
        ``[n, L, dim]`` float otherwise.
        """
        if self.kind == "scalar":
            return self._scalars(raw, n)
        if self.kind == "categorical":
            if isinstance(raw, torch.Tensor):
                idx = self._label_tensor(raw)
            else:
                items = raw if isinstance(raw, (list, tuple)) else [raw]
                idx = torch.tensor([self._label_index(v) for v in items], dtype=torch.long)
            if idx.numel() == 1:
                idx = idx.expand(n).clone()
            if idx.shape != (n,):
                raise ConditionError(f"condition {self.name!r}: got {idx.numel()} values for a "
                                     f"batch of {n}")
            if bool(((idx < 0) | (idx >= len(self.labels))).any()):
                raise ConditionError(f"condition {self.name!r}: label index out of range "
                                     f"0..{len(self.labels) - 1}: {idx.tolist()}")
            return idx
        if self.encoder is not None and (isinstance(raw, str) or (
                isinstance(raw, (list, tuple)) and raw and all(isinstance(v, str) for v in raw))):
            # one value: its row, broadcast to the batch below
            raw = self._encoded([raw])[0] if isinstance(raw, str) else self._encoded(raw)
        value = torch.as_tensor(raw, dtype=torch.float32)
        per_sample = 1 if self.kind == "vector" else 2
        if value.ndim == per_sample:
            value = value.unsqueeze(0).expand(n, *value.shape).clone()
        if value.ndim != per_sample + 1 or value.shape[0] != n or value.shape[-1] != self.dim:
            want = "[B, dim]" if self.kind == "vector" else "[B, L, dim]"
            raise ConditionError(f"condition {self.name!r}: expected shape {want} with B={n}, "
                                 f"dim={self.dim}; got {tuple(value.shape)}")
        return value

    def _scalars(self, raw: Any, n: int) -> torch.Tensor:
        """One number (or its text, from ``--cond w=4``) or ``n`` of them → ``[n]`` float; with an
        ``encoder``, text values go through it (``list[str] -> [n]``)."""
        if self.encoder is not None and (isinstance(raw, str) or (
                isinstance(raw, (list, tuple)) and raw and all(isinstance(v, str) for v in raw))):
            values = [raw] if isinstance(raw, str) else list(raw)
            raw = self._encoded(values)
            if tuple(raw.shape) != (len(values),):
                raise ConditionError(f"condition {self.name!r}: encoder {self.encoder!r} returned shape "
                                     f"{tuple(raw.shape)} for {len(values)} values; a scalar condition's "
                                     f"encoder returns [n]")
        items = raw.reshape(-1).tolist() if isinstance(raw, torch.Tensor) else (
            list(raw) if isinstance(raw, (list, tuple)) else [raw])
        values = []
        for v in items:
            try:
                if isinstance(v, bool):
                    raise ValueError
                values.append(float(v))
            except (TypeError, ValueError):
                raise ConditionError(f"condition {self.name!r} is a scalar: give a number, "
                                     f"got {v!r}") from None
        value = torch.tensor(values, dtype=torch.float32)
        if not bool(torch.isfinite(value).all()):
            raise ConditionError(f"condition {self.name!r}: values must be finite, got {values[:5]}")
        if value.numel() == 1:
            value = value.expand(n).clone()
        if value.shape != (n,):
            raise ConditionError(f"condition {self.name!r}: got {value.numel()} values for a batch of {n}")
        return value

    def _encoded(self, values: Sequence[str]) -> torch.Tensor:
        """``n`` text values through the spec's registered encoder → its tensor ``[n, ...]``."""
        from framework.core.encoders import EncoderError, resolve
        from framework.core.plugins import PluginError

        try:
            encode = resolve(self.encoder)
        except (EncoderError, PluginError) as e:
            raise ConditionError(f"condition {self.name!r}: {e}") from None
        return torch.as_tensor(encode(list(values)))

    def _label_tensor(self, raw: torch.Tensor) -> torch.Tensor:
        """Label indices given as a tensor → ``[k]`` long. Floats must hold whole numbers: casting
        ``1.7`` to label 1 would silently sample another class than asked for."""
        if raw.dtype == torch.bool or raw.is_complex():
            raise ConditionError(f"condition {self.name!r} is categorical: give label indices as an "
                                 f"integer tensor, got dtype {raw.dtype}")
        if raw.is_floating_point():
            bad = ~torch.isfinite(raw) | (raw != raw.round())
            if bool(bad.any()):
                raise ConditionError(
                    f"condition {self.name!r} is categorical: label indices must be whole numbers, "
                    f"got {raw.reshape(-1)[bad.reshape(-1)][:5].tolist()} (a {raw.dtype} tensor)")
        return raw.long().reshape(-1)

    def _label_index(self, v: Any) -> int:
        if isinstance(v, (int,)) and not isinstance(v, bool):
            if 0 <= v < len(self.labels):
                return v
            raise ConditionError(f"condition {self.name!r}: label index {v} out of range "
                                 f"0..{len(self.labels) - 1}")
        if str(v) in self.labels:
            return self.labels.index(str(v))
        raise unknown_error(f"value for condition {self.name!r}:", v, self.labels)


@dataclass
class Conditions:
    """A batch of condition values with per-sample presence.

    Attributes:
        values: name → value tensor, batch first (``[B]``, ``[B, D]`` or ``[B, L, D]``).
        present: name → bool ``[B]``; ``False`` rows get the condition's null.
        cads: name → ``[B, 3]`` rows of ``(√γ, s, ψ)`` for CADS condition noise (optional).
        generator: random source for CADS noise in the conditioner.
    """

    values: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor] = field(default_factory=dict)
    cads: dict[str, torch.Tensor] = field(default_factory=dict)
    generator: torch.Generator | None = None

    def __post_init__(self) -> None:
        sizes = {k: v.shape[0] for k, v in self.values.items()}
        if len(set(sizes.values())) > 1:
            raise ConditionError(f"conditions disagree on the batch size: {sizes}")
        for k, v in self.values.items():
            if k not in self.present:
                self.present[k] = torch.ones(v.shape[0], dtype=torch.bool, device=v.device)
            elif self.present[k].shape != (v.shape[0],):
                raise ConditionError(f"condition {k!r}: present mask has shape "
                                     f"{tuple(self.present[k].shape)}, expected ({v.shape[0]},)")

    @classmethod
    def from_raw(cls, specs: Mapping[str, ConditionSpec], raw: Mapping[str, Any], n: int
                 ) -> Conditions:
        """Build a batch of ``n`` from raw values, e.g. ``{"shape": "triangle", "color": [0, 1]}``.

        Conditions of ``specs`` missing from ``raw`` are absent (null) for every sample.
        """
        for name in raw:
            if name not in specs:
                raise unknown_error("condition", name, specs)
        values, present = {}, {}
        for name, spec in specs.items():
            if name in raw and raw[name] is not None:
                values[name] = spec.encode(raw[name], n)
                present[name] = torch.ones(n, dtype=torch.bool)
            else:
                values[name] = spec.encode(0, n) if spec.kind in ("categorical", "scalar") else (
                    torch.zeros(n, spec.dim) if spec.kind == "vector" else torch.zeros(n, 1, spec.dim))
                present[name] = torch.zeros(n, dtype=torch.bool)
        return cls(values, present)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.values)

    @property
    def batch_size(self) -> int:
        return next(iter(self.values.values())).shape[0] if self.values else 0

    def to(self, device: torch.device | str) -> Conditions:
        return Conditions({k: v.to(device) for k, v in self.values.items()},
                          {k: v.to(device) for k, v in self.present.items()},
                          {k: v.to(device) for k, v in self.cads.items()}, self.generator)

    def index(self, rows: slice | torch.Tensor) -> Conditions:
        """The rows ``rows`` of every tensor."""
        return Conditions({k: v[rows] for k, v in self.values.items()},
                          {k: v[rows] for k, v in self.present.items()},
                          {k: v[rows] for k, v in self.cads.items()}, self.generator)

    @staticmethod
    def cat(parts: Sequence[Conditions]) -> Conditions:
        """Concatenate batches along the batch dimension (used to pack branches)."""
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        values = {k: torch.cat([p.values[k] for p in parts]) for k in first.values}
        present = {k: torch.cat([p.present[k] for p in parts]) for k in first.values}
        cads = {}
        for k in {k for p in parts for k in p.cads}:
            cads[k] = torch.cat([p.cads[k] if k in p.cads else _no_cads(p.batch_size, p.values[k])
                                 for p in parts])
        return Conditions(values, present, cads, first.generator)


def _no_cads(n: int, like: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(n, 3, device=like.device)
    out[:, 0] = 1.0  # √γ = 1, s = 0: no noise
    return out
