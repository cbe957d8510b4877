"""Conditions: specs with null kinds, per-sample presence, the conditioner, and dropout.

One mechanism serves training and sampling: a :class:`Conditions` batch carries, per
condition, a value tensor and a per-sample *present* mask. The :class:`Conditioner`
substitutes each condition's null wherever a sample's condition is absent. Training drops
conditions per sample with a :class:`DropoutSpec`; guidance branches set the masks.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from framework.core.errors import UserError

if TYPE_CHECKING:
    from framework.guidance.expr import Expr

__all__ = [
    "POSITION_FEATURES",
    "ConditionError",
    "ConditionSpec",
    "Conditioner",
    "Conditions",
    "DropoutSpec",
    "ScalarEmbedding",
    "UntrainedSubsetWarning",
    "position_features",
    "random_requests",
]

NullKind = Literal["learned", "zeros", "mask"]
CondKind = Literal["categorical", "vector", "sequence", "scalar"]


class ConditionError(UserError, ValueError):
    """A condition name, value or shape that does not fit the model."""


class UntrainedSubsetWarning(UserWarning):
    """Guidance asks for a condition subset that training never dropped to."""


def _unknown(kind: str, name: Any, valid: Iterable[str]) -> ConditionError:
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
        raise _unknown(f"value for condition {self.name!r}:", v, self.labels)


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
                raise _unknown("condition", name, specs)
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


#: sinusoidal index features a ``positions: true`` sequence condition gets per element
POSITION_FEATURES = 16


def position_features(length: int, features: int = POSITION_FEATURES,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """Sinusoidal features of the element index ``[length, features]``: ``sin`` and ``cos`` of
    ``i · π / 2^k`` for ``k = 0 … features/2 − 1`` (periods 2, 4, … 2^(features/2) elements).

    Absolute indices, not fractions of the length, so element ``i`` of a sequence means the same
    whatever its length; the periods double like a binary counter, so every index up to
    ``2^(features/2 − 1)`` gets a distinct, smoothly varying code.
    """
    if features < 2 or features % 2:
        raise ValueError(f"position features must be a positive even number, got {features}")
    i = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    freqs = torch.pi / 2.0 ** torch.arange(features // 2, dtype=torch.float32, device=device)
    return torch.cat([torch.sin(i * freqs), torch.cos(i * freqs)], dim=-1)


class Conditioner(nn.Module):
    """Embeds every condition to ``dim`` features and substitutes nulls where absent.

    Categorical → ``nn.Embedding``; vector/sequence → ``nn.Linear``; scalar →
    :class:`ScalarEmbedding`. A sequence condition with ``positions`` has
    :func:`position_features` of each element's index appended to its value before the
    ``nn.Linear`` (``[B, L, dim + POSITION_FEATURES]`` in), so the model knows element order.
    The null is a learned vector (``learned``), zeros (``zeros``), or an extra mask-token
    embedding (``mask``). A scalar condition's embedding and learned null start
    at zero, so adding one to a trained model (a distilled student initialised from its teacher)
    leaves its predictions unchanged until training moves them.
    CADS noise, when a branch requests it, is applied to the embedding of present rows.

    ``forward`` returns name → ``[B, dim]`` (categorical/vector) or ``[B, L, dim]`` (sequence).
    """

    def __init__(self, specs: Sequence[ConditionSpec], dim: int) -> None:
        super().__init__()
        self.specs = {s.name: s for s in specs}
        self.dim = dim
        self.embed = nn.ModuleDict()
        self.null = nn.ParameterDict()
        for s in specs:
            if s.kind == "categorical":
                self.embed[s.name] = nn.Embedding(len(s.labels) + (s.null == "mask"), dim)
            elif s.kind == "scalar":
                self.embed[s.name] = ScalarEmbedding(dim)
            else:
                extra = POSITION_FEATURES if s.positions else 0
                self.embed[s.name] = nn.Linear(s.dim + extra, dim)
            if s.null == "learned":
                init = torch.zeros(dim) if s.kind == "scalar" else torch.randn(dim) * 0.02
                self.null[s.name] = nn.Parameter(init)

    def forward(self, conditions: Conditions) -> dict[str, torch.Tensor]:
        out = {}
        for name, spec in self.specs.items():
            if name not in conditions.values:
                raise ConditionError(f"the model expects condition {name!r}, the batch has "
                                     f"{list(conditions.values)}")
            value, present = conditions.values[name], conditions.present[name]
            if spec.positions:
                pos = position_features(value.shape[1], device=value.device).to(value.dtype)
                value = torch.cat([value, pos.expand(value.shape[0], -1, -1)], dim=-1)
            emb = self.embed[name](value)
            if name in conditions.cads:
                emb = _cads_noise(emb, conditions.cads[name], conditions.generator)
            if spec.null == "learned":
                null = self.null[name].to(emb.dtype).expand_as(emb)
            elif spec.null == "zeros":
                null = torch.zeros_like(emb)
            else:  # the extra embedding row is the mask token
                mask_id = torch.full(value.shape[:1], len(spec.labels), dtype=torch.long,
                                     device=value.device) if spec.kind == "categorical" else None
                null = (self.embed[name](mask_id) if mask_id is not None else torch.zeros_like(emb))
            keep = present.view(-1, *[1] * (emb.ndim - 1))
            out[name] = torch.where(keep, emb, null)
        return out


class ScalarEmbedding(nn.Module):
    """A real number per sample ``[B]`` → ``[B, dim]``: the value and sinusoids of it at
    log-spaced frequencies, then an MLP whose last layer starts at zero (the embedding starts with
    no effect).

    The default frequencies, 10^-1.5 … 10^0.5 rad per unit (periods 2 to 200), vary smoothly over
    the values a guidance weight takes (~0 … 20), so values between the ones trained on are
    interpolated; much higher frequencies turn neighbouring weights into unrelated features. They
    are saved with the weights (a persistent buffer), so a model keeps the ones it was trained with.
    """

    def __init__(self, dim: int, features: int = 32) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.logspace(-1.5, 0.5, features // 2))
        self.mlp = nn.Sequential(nn.Linear(features + 1, dim), nn.SiLU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        v = value.float().reshape(-1, 1)
        args = v * self.freqs.to(v.device)[None]
        feats = torch.cat([v, torch.sin(args), torch.cos(args)], dim=-1)
        return self.mlp(feats.to(self.mlp[0].weight.dtype))


def _cads_noise(emb: torch.Tensor, params: torch.Tensor, generator: torch.Generator | None
                ) -> torch.Tensor:
    """CADS: ``ĉ = √γ·c + s·√(1−γ)·n``, then ψ-rescale to ``c``'s per-sample mean/std."""
    shape = (-1, *[1] * (emb.ndim - 1))
    sg, s, psi = (params[:, i].to(emb.dtype).view(shape) for i in range(3))
    noise = torch.randn(emb.shape, generator=generator, device=emb.device, dtype=emb.dtype)
    noised = sg * emb + s * (1 - sg * sg).clamp_min(0).sqrt() * noise
    dims = tuple(range(1, emb.ndim))
    mean_c, std_c = emb.mean(dims, keepdim=True), emb.std(dims, keepdim=True)
    mean_n, std_n = noised.mean(dims, keepdim=True), noised.std(dims, keepdim=True).clamp_min(1e-6)
    rescaled = (noised - mean_n) / std_n * std_c + mean_c
    return psi * rescaled + (1 - psi) * noised


class DropoutSpec:
    """Per-sample condition dropout with per-condition and joint probabilities.

    ``DropoutSpec({"text": 0.05, "image": 0.05, ("text", "image"): 0.05})`` drops, per
    sample: both together with probability 0.05 (tuple keys are mutually exclusive events),
    and on top each condition independently with its own probability. A condition not
    listed is never dropped.
    """

    def __init__(self, rates: Mapping[str | tuple[str, ...], float] | None = None) -> None:
        self.single: dict[str, float] = {}
        self.joint: dict[frozenset[str], float] = {}
        for key, p in (rates or {}).items():
            if not 0.0 <= float(p) <= 1.0:
                raise ConditionError(f"dropout probability for {key!r} must be in [0, 1], got {p}")
            if isinstance(key, str):
                self.single[key] = float(p)
            else:  # a tuple is one exclusive event, even of a single condition
                group = frozenset(key)
                self.joint[group] = self.joint.get(group, 0.0) + float(p)
        total = sum(self.joint.values())
        if total > 1.0 + 1e-9:
            raise ConditionError(f"joint dropout probabilities sum to {total:.3f} > 1")

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.single) | frozenset(n for j in self.joint for n in j)

    def __repr__(self) -> str:
        items = [f"{k!r}: {v:g}" for k, v in self.single.items()]
        items += [f"{tuple(sorted(k))!r}: {v:g}" for k, v in self.joint.items()]
        return f"DropoutSpec({{{', '.join(items)}}})"

    def validate(self, names: Iterable[str]) -> None:
        """Raise if the spec names a condition the model does not have."""
        names = set(names)
        for n in self.names:
            if n not in names:
                raise _unknown("condition in DropoutSpec", n, names)

    def sample(self, names: Sequence[str], batch_size: int,
               generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Draw per-sample keep masks: name → bool ``[B]`` (``False`` = dropped)."""
        self.validate(names)
        drop = {n: torch.zeros(batch_size, dtype=torch.bool) for n in names}
        if self.joint:
            u = torch.rand(batch_size, generator=generator)
            lo = 0.0
            for group, p in self.joint.items():
                hit = (u >= lo) & (u < lo + p)
                for n in group:
                    drop[n] |= hit
                lo += p
        for n, p in self.single.items():
            drop[n] |= torch.rand(batch_size, generator=generator) < p
        return {n: ~d for n, d in drop.items()}

    def apply(self, conditions: Conditions, generator: torch.Generator | None = None) -> Conditions:
        """A copy of ``conditions`` with dropped samples marked absent."""
        keep = self.sample(conditions.names, conditions.batch_size, generator)
        present = {n: conditions.present[n] & keep[n].to(conditions.present[n].device)
                   for n in conditions.names}
        return Conditions(dict(conditions.values), present, dict(conditions.cads),
                          conditions.generator)

    def record(self) -> dict[str, dict[str, float]]:
        """Plain data for checkpoints and ``hparams.yaml``: ``{"exclusive": {"a+b": p, ...},
        "independent": {"a": p, ...}}`` (an exclusive event drops its conditions together)."""
        return {"exclusive": {"+".join(sorted(g)): p for g, p in self.joint.items()},
                "independent": dict(self.single)}

    @staticmethod
    def table(record: Mapping[str, Mapping[str, float]]) -> str:
        """A :meth:`record` as a text table: what each drop event drops, with its probability per
        sample."""
        rows = [(k.replace("+", ", "), p, "exclusive event") for k, p in record.get("exclusive", {}).items()]
        rows += [(k, p, "independently") for k, p in record.get("independent", {}).items()]
        if not rows:
            return "condition dropout: none (every sample keeps all its conditions)"
        keep = 1.0 - sum(record.get("exclusive", {}).values())
        width = max(len("drops"), *(len(r[0]) for r in rows))
        lines = ["condition dropout trained, per sample:", f"  {'drops':<{width}}  probability",
                 *(f"  {d:<{width}}  {p:<11.4g}  {how}" for d, p, how in rows)]
        if record.get("exclusive"):
            rest = "then the independent drops" if record.get("independent") else "keeps every condition"
            lines.append(f"  {'(no event)':<{width}}  {keep:<11.4g}  {rest}")
        return "\n".join(lines)

    def trains(self, absent: Iterable[str], names: Iterable[str]) -> bool:
        """Whether exactly the conditions ``absent`` (of ``names``) are dropped with probability > 0."""
        absent, names = frozenset(absent), frozenset(names)
        if not absent:
            return all(self.single.get(n, 0.0) < 1.0 for n in names) and \
                sum(self.joint.values()) < 1.0
        events = [(g, p) for g, p in self.joint.items() if p > 0]
        if sum(self.joint.values()) < 1.0:
            events.append((frozenset(), 1.0))
        for group, _ in events:
            if not group <= absent:
                continue
            rest_ok = all(self.single.get(n, 0.0) > 0 for n in absent - group)
            kept_ok = all(self.single.get(n, 0.0) < 1.0 for n in names - absent)
            if rest_ok and kept_ok:
                return True
        return False

    def check(self, expr: Expr, specs: Mapping[str, ConditionSpec] | Iterable[str],
              strict: bool = False) -> list[frozenset[str]]:
        """Check that training covers every subset ``expr`` evaluates on the main network.

        Returns the untrained subsets (non-null condition names). Warns with
        :class:`UntrainedSubsetWarning` naming each, or raises :class:`ConditionError`
        when ``strict``. Conditions with a ``mask`` null need no dropout.
        """
        specs_map = specs if isinstance(specs, Mapping) else {n: None for n in specs}
        names = frozenset(specs_map)
        trainable = frozenset(n for n, s in specs_map.items() if s is None or s.needs_dropout)
        missing = []
        for subset in sorted(expr.required_subsets(), key=lambda s: (len(s), sorted(s))):
            unknown = subset - names
            if unknown:
                raise _unknown("condition", sorted(unknown)[0], names)
            absent = (names - subset) & trainable
            if not self.trains(absent, trainable):
                missing.append(subset)
        if missing:
            desc = "; ".join(_subset_str(s, names) for s in missing)
            msg = (f"guidance {expr!r} evaluates condition subsets the model was never trained "
                   f"on: {desc}. Training dropout was {self!r}.")
            if strict:
                raise ConditionError(msg)
            warnings.warn(msg, UntrainedSubsetWarning, stacklevel=2)
        return missing

    @classmethod
    def for_guidance(cls, exprs: Expr | Sequence[Expr], specs: Mapping[str, ConditionSpec]
                     | Iterable[str], rate: float = 0.1) -> DropoutSpec:
        """A dropout spec that trains exactly the subsets the given guidance evaluates.

        Every required absent-pattern gets an equal share of ``rate`` as a joint rule, so the
        model sees each null pattern the sampler will ask for (e.g. nested guidance's
        ``(c1, ∅)``) and nothing else is spent on patterns no expression uses.
        """
        exprs = [exprs] if not isinstance(exprs, Sequence) else list(exprs)
        specs_map = specs if isinstance(specs, Mapping) else {n: None for n in specs}
        trainable = frozenset(n for n, s in specs_map.items() if s is None or s.needs_dropout)
        patterns = set()
        for e in exprs:
            for subset in e.required_subsets():
                absent = trainable - subset
                if absent:
                    patterns.add(frozenset(absent))
        if not patterns:
            return cls({})
        share = rate / len(patterns)
        # exclusive (tuple) events only, so the total drop rate is exactly `rate`
        return cls({tuple(sorted(p)): share
                    for p in sorted(patterns, key=lambda s: (len(s), sorted(s)))})


def _subset_str(subset: frozenset[str], names: frozenset[str]) -> str:
    kept = ", ".join(sorted(subset)) or "∅"
    dropped = ", ".join(sorted(names - subset)) or "nothing"
    return f"{{{kept}}} (dropping {dropped})"


def random_requests(specs: Mapping[str, ConditionSpec], names: Sequence[str], n: int,
                    seed: int) -> dict[str, torch.Tensor]:
    """``n`` uniformly drawn label indices ``[n]`` for each categorical condition in ``names``
    (from a generator seeded with ``seed``: the same requests for the same seed)."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randint(len(specs[k].labels), (n,), generator=g) for k in names}
