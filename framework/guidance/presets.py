"""Named guidance methods. Each preset is sugar: it returns an ordinary expression.

Weights follow the framework convention ``ε̃ = ε_u + w(ε_c − ε_u)``: ``w = 0`` is
unconditional, ``w = 1`` conditional, ``w > 1`` guided. A ``cond`` argument is a
condition name, a tuple of names (kept together), or a :class:`Branch`.
"""

from __future__ import annotations

from collections.abc import Sequence

from framework.guidance.branches import AttnBlur, AttnIdentity, Branch, Perturbation, SkipLayers, TimeShift
from framework.guidance.branches import cond as _cond
from framework.guidance.branches import independent as _independent
from framework.guidance.branches import noised as _noised
from framework.guidance.branches import uncond as _uncond
from framework.guidance.expr import PROBE_TAUS, Expr
from framework.guidance.ops import Adaptive, CostGrad, PlausibilityMask, Project, Renoised, Rescale, ZeroStar
from framework.guidance.schedules import WeightLike, as_weight, schedule, window

__all__ = [
    "adaptive", "apg", "autoguidance", "cads", "cfg", "cfg_pp", "cfg_zero_star", "contrastive", "cost",
    "double", "icg", "independent", "interval", "joint", "negative", "nested", "pag", "rescale", "seg",
    "skip_layers", "tsg",
]

CondLike = str | Sequence[str] | Branch


def _branch(c: CondLike) -> Branch:
    if isinstance(c, Branch):
        return c
    if isinstance(c, str):
        return _cond(c)
    return _cond(*c)


def _branch_or_uncond(c: CondLike) -> Branch:
    """``()`` (no condition) is the unconditional branch."""
    return _uncond() if c == () else _branch(c)


def _guidance_arg(value: object, preset: str) -> Expr:
    """``value`` if it is a guidance expression; else a TypeError that shows the usual form."""
    if isinstance(value, Expr):
        return value
    what = f"the name {value!r}" if isinstance(value, str) else f"{type(value).__name__} {value!r}"
    example = value if isinstance(value, str) and value.isidentifier() else "text"
    raise TypeError(f"{preset}() takes a guidance expression, not {what}: write e.g. "
                    f"{preset}(cfg({example}, 7))")


def _split_cfg(e: Expr) -> tuple[Branch, Branch, WeightLike]:
    """``(cond, uncond, w)`` of a two-branch guidance such as ``cfg`` or ``negative``."""
    if any(isinstance(n, CostGrad) for n in e.walk()):
        raise ValueError(f"{e!r} has a cost term, which a two-branch method would drop: add it outside, "
                         f"e.g. apg(cfg(...)) + cost(...)")
    ref = e.reference()
    branches = e.branches()
    opaque = [k for tau in PROBE_TAUS for k in e.coefficients(tau) if not isinstance(k, Branch)]
    if len(branches) != 2 or ref not in branches or opaque:
        raise ValueError(
            f"expected a two-branch guidance (cfg, negative, icg, autoguidance); got {e!r}. "
            f"For multi-condition guidance, project each direction with "
            f"framework.guidance.Project.")
    (other,) = branches - {ref}
    w = lambda tau: e.coefficients(tau).get(ref, 0.0)
    values = {w(tau) for tau in PROBE_TAUS}
    return ref, other, values.pop() if len(values) == 1 else schedule(w, f"w[{e!r}]")


def _cfg_parts(c: CondLike | Expr, w: WeightLike | None) -> tuple[Branch, Branch, WeightLike]:
    if isinstance(c, Expr) and not isinstance(c, Branch):
        if w is not None:
            raise TypeError("give either a guidance expression or a condition with w, not both")
        return _split_cfg(c)
    if w is None:
        raise TypeError("a guidance weight w is required")
    return _branch(c), _uncond(), w


# ------------------------------------------------------------------ single condition
def cfg(cond: CondLike, w: WeightLike) -> Expr:
    """Classifier-free guidance — *Classifier-Free Diffusion Guidance* (Ho & Salimans, 2022);
    for flows, *Guided Flows* (2023); for logits, *Make-A-Scene* (2022).

    ``ε̃ = ε_u + w·(ε_c − ε_u)``. 2 branches.
    """
    return _uncond() + w * (_branch(cond) - _uncond())


def negative(cond: CondLike, name: str, value: object, w: WeightLike) -> Expr:
    """Negative prompt (standard): ``ε̃ = ε_n + w·(ε_c − ε_n)``, ``ε_n = ε(x, name=value)``.

    ``negative("color", "color", "red", 3.0)`` steers away from red. 2 branches.
    """
    pos = _branch(cond)
    neg = Branch(tuple(sorted({**dict(pos.conds), **dict(_cond(**{name: value}).conds)}.items())),
                 pos.network, pos.perturbation)
    return neg + w * (pos - neg)


def interval(cond: CondLike, w: WeightLike, lo: float, hi: float) -> Expr:
    """Guidance interval — *Applying Guidance in a Limited Interval Improves Sample and
    Distribution Quality in Diffusion Models* (Kynkäänniemi et al., 2024).

    ``ε̃ = ε_c + (w(τ) − 1)·(ε_c − ε_u)`` with the guidance active only for ``lo ≤ τ ≤ hi``;
    outside it ``ε̃ = ε_c`` and only 1 branch is evaluated.
    """
    c = _branch(cond)
    return c + window(lo, hi, as_weight(w) - 1.0) * (c - _uncond())


def adaptive(guidance: Expr, threshold: float = 0.99, after: float = 0.0,
             per_sample: bool = True, space: str | None = None, patience: int = 1,
             measure: str = "value") -> Expr:
    """Adaptive Guidance — *Adaptive Guidance: Training-free Acceleration of Conditional
    Diffusion Models* (Castillo et al., 2023).

    Guide until ``γ_t = cos(ε_c, ε̃) > γ̄``, then ``ε̃ = ε_c`` (1 branch) for the rest of the run;
    switching is considered from progress ``after`` on. With ``per_sample=True`` (default) each
    row switches on its own and the extra branches run on the rows still guided; with
    ``per_sample=False`` the whole batch switches once every row agrees. ``space`` is where the
    cosine is measured (default: the sampler's space; ``x0`` suits flow models, whose velocity
    cosine stays far from 1). ``patience=k`` asks for ``γ_t > γ̄`` at ``k`` consecutive steps
    before a row leaves (hysteresis; the paper's rule is ``patience=1``). ``measure="probs"``
    (token models; ours) takes the cosine of the next-token probabilities, not the logits. See
    :mod:`framework.guidance.ops.adaptive`.
    """
    return Adaptive(_guidance_arg(guidance, "adaptive"), threshold, after=after, per_sample=per_sample,
                    space=space, patience=patience, measure=measure)


def cfg_pp(cond: CondLike, lam: float) -> Expr:
    """CFG++ — *CFG++: Manifold-constrained Classifier Free Guidance for Diffusion Models* (2024).

    Denoise with ``ε̃_λ = ε_u + λ(ε_c − ε_u)``, ``λ ∈ [0, 1]``; re-noise with ``ε_u``.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"CFG++ uses λ in [0, 1] (it replaces w > 1 by a manifold step), got {lam}")
    u = _uncond()
    return Renoised(u + lam * (_branch(cond) - u), u)


def apg(cond: CondLike | Expr, w: WeightLike | None = None, *, eta: float = 0.0,
        momentum: float = -0.5, norm_threshold: float = 0.0, space: str = "x0") -> Expr:
    """Adaptive projected guidance — *Eliminating Oversaturation and Artifacts of High Guidance
    Scales in Diffusion Models* (Sadat et al., 2024).

    ``D̃ = D_c + (w − 1)·(Δ⊥ + η·Δ∥)`` in x0 space, with ``Δ = D_c − D_u`` after momentum
    ``β`` and norm threshold ``r``. Takes a condition and ``w``, or a two-branch guidance
    such as ``cfg("text", 9.0)``. See :mod:`framework.guidance.ops.apg`.
    """
    c, u, w = _cfg_parts(cond, w)
    return c + (as_weight(w) - 1.0) * Project(c - u, c, eta=eta, momentum=momentum,
                                              norm_threshold=norm_threshold, space=space)


def rescale(guidance: Expr, phi: float = 0.7, space: str = "x0") -> Expr:
    """CFG-rescale — *Common Diffusion Noise Schedules and Sample Steps are Flawed* (2023).

    ``x̃ = φ·x_cfg·std(x_c)/std(x_cfg) + (1 − φ)·x_cfg`` with ``x_c`` the unguided prediction.
    """
    guidance = _guidance_arg(guidance, "rescale")
    return Rescale(guidance, guidance.reference(), phi=phi, space=space)


def cfg_zero_star(cond: CondLike | Expr, w: WeightLike | None = None, *,
                  zero_init_steps: int = 1, space: str = "flow_v") -> Expr:
    """CFG-Zero* — *CFG-Zero*: Improved Classifier-Free Guidance for Flow Matching Models* (2025).

    ``s* = ⟨v_c, v_u⟩/‖v_u‖²``, ``ṽ = s*·v_u + w·(v_c − s*·v_u)``; ``ṽ = 0`` (NFE 0) for the
    first ``zero_init_steps`` steps.
    """
    c, u, w = _cfg_parts(cond, w)
    return ZeroStar(c, u, as_weight(w), zero_init_steps=zero_init_steps, space=space)


def cads(cond: CondLike, w: WeightLike, tau1: float = 0.6, tau2: float = 0.9, s: float = 0.25,
         psi: float = 1.0) -> Expr:
    """CADS — *CADS: Unleashing the Diversity of Diffusion Models through Condition-Annealed
    Sampling* (Sadat et al., 2023).

    CFG on a noised condition ``ĉ = √γ·c + s·√(1−γ)·n``; with diffusion time ``t = 1 − τ``,
    ``γ = 1`` for ``t ≤ τ1`` and falls linearly to 0 at ``t ≥ τ2``. Optional ψ-rescale.
    """
    if not 0.0 <= tau1 < tau2 <= 1.0:
        raise ValueError(f"CADS needs 0 ≤ tau1 < tau2 ≤ 1, got {tau1}, {tau2}")
    c = _branch(cond)

    def gamma(tau: float) -> float:
        t = 1.0 - tau
        return min(1.0, max(0.0, (tau2 - t) / (tau2 - tau1)))

    g = schedule(gamma, f"cads_gamma({tau1:g}, {tau2:g})")
    noisy = Branch(tuple((n, _noised(g, s, psi)) for n, _ in c.conds), c.network, c.perturbation)
    return _uncond() + w * (noisy - _uncond())


def icg(cond: CondLike, w: WeightLike, sampler: str = "shuffle") -> Expr:
    """Independent condition guidance — *No Training, No Problem: Rethinking Classifier-Free
    Guidance for Diffusion Models* (Sadat et al., 2024).

    ``ε̃ = ε(x, ĉ) + w·(ε(x, c) − ε(x, ĉ))`` with ``ĉ`` independent of ``x`` (another sample's
    condition, or a prior draw). Needs no condition dropout.
    """
    c = _branch(cond)
    ind = Branch(tuple((n, _independent(sampler)) for n, _ in c.conds), c.network, c.perturbation)
    return ind + w * (c - ind)


def autoguidance(cond: CondLike, w: WeightLike, weak: str = "weak") -> Expr:
    """Autoguidance — *Guiding a Diffusion Model with a Bad Version of Itself* (Karras et al., 2024).

    ``D̃ = D_weak + w·(D_main − D_weak)`` with the same condition; 1 main + 1 weak branch.
    """
    c = _branch(cond)
    return c.on(weak) + w * (c - c.on(weak))


def contrastive(cond: CondLike = (), beta: WeightLike = 1.0, alpha: float = 0.1, weak: str = "weak") -> Expr:
    """Contrastive decoding — *Contrastive Decoding: Open-ended Text Generation as Optimization*
    (Li et al., 2022), in the weighted form of *Contrastive Decoding Improves Reasoning in Large
    Language Models* (O'Brien & Lewis, 2023).

    ``s = (1 + β)·log p_E − β·log p_A`` on ``V_head = {v : p_E(v) ≥ α·max p_E}``, ``−∞`` elsewhere;
    ``p_E`` the main (expert) model, ``p_A`` the ``weak`` (amateur) one. Autoguidance in log space
    with ``w = 1 + β`` plus the plausibility mask; as ``β → ∞`` the ranking inside ``V_head`` is the
    original ``log p_E − log p_A``. 1 main + 1 weak branch.
    """
    c = _branch_or_uncond(cond)
    return PlausibilityMask(c + beta * (c - c.on(weak)), c, alpha)


def cost(name: str, w: WeightLike, *, through_model: bool = False, at: CondLike | None = None) -> Expr:
    """Cost-gradient guidance — the ``GradTerm`` of *TFG: Unified Training-Free Guidance for
    Diffusion Models* (Ye et al., 2024); *Universal Guidance for Diffusion Models* (Bansal et al.,
    2023); *Diffusion Posterior Sampling* (Chung et al., 2022) for ``through_model=True``;
    *FlowChef* (Patel et al., 2024) for ``through_model=False``.

    A direction (mass 0) in x0 space, added to any guided prediction with ``+``::

        x̃0 = x̂0_base − w·∇_{x̂0} cost(x̂0)               through_model=False
        x̃0 = x̂0_base − w·∇_{x_t} cost(x̂0(x_t))          through_model=True

    ``x̂0`` is the prediction of branch ``at`` (default: the guided expression's reference, the
    unguided branch its CFG terms evaluate anyway, so no extra NFE). In other spaces the direction
    converts without an ``x_t`` offset (ε: ``+ w·(α_t/σ_t)·∇``; flow velocity: ``+ w·∇/t``).
    ``cost`` is named: ``fn(x0 [B, *shape], conditions) -> [B]`` supplied at sampling time
    (``costs={name: fn}``) or by the model's modality plugin. Continuous families only.
    ``cfg("text", 3) + cost("trajectory", 2.0)``. See :mod:`framework.guidance.ops.cost_grad`.
    """
    branch = None if at is None else _branch_or_uncond(at)
    return w * CostGrad(name, through_model=through_model, at=branch)


def _perturbed(p: Perturbation, s: WeightLike, cond: CondLike, base: Expr | None) -> Expr:
    c = _branch_or_uncond(cond)
    return (base if base is not None else c) + s * (c - c.perturbed(p))


def pag(s: WeightLike, cond: CondLike = (), layers: Sequence[int] | None = None,
        base: Expr | None = None) -> Expr:
    """Perturbed-attention guidance — *Self-Rectifying Diffusion Sampling with
    Perturbed-Attention Guidance* (Ahn et al., 2024).

    ``base + s·(ε_c − ε̂_c)`` where ``ε̂`` has self-attention maps replaced by the identity;
    ``base`` defaults to ``ε_c``. With ``base=cfg(...)``: ``ε_u + w(ε_c − ε_u) + s(ε_c − ε̂_c)``.
    """
    return _perturbed(AttnIdentity(_layers(layers)), s, cond, base)


def seg(s: WeightLike, cond: CondLike = (), sigma: float = 10.0,
        layers: Sequence[int] | None = None, base: Expr | None = None) -> Expr:
    """Smoothed energy guidance — *Smoothed Energy Guidance: Guiding Diffusion Models with
    Reduced Energy Curvature of Attention* (Hong, 2024).

    ``base + s·(ε − ε_σ)`` where ``ε_σ`` uses attention queries blurred with width ``sigma``.
    """
    return _perturbed(AttnBlur(_layers(layers), float(sigma)), s, cond, base)


def skip_layers(s: WeightLike, layers: Sequence[int], cond: CondLike = (),
                base: Expr | None = None) -> Expr:
    """Skip-layer guidance (as in Stable Diffusion 3.5's SLG): ``base + s·(ε − ε_skip)`` where
    ``ε_skip`` bypasses the listed blocks."""
    return _perturbed(SkipLayers(_layers(layers)), s, cond, base)


def tsg(s: WeightLike, delta: float, cond: CondLike = (), base: Expr | None = None) -> Expr:
    """Time-step guidance — *No Training, No Problem* (Sadat et al., 2024).

    ``base + s·(ε(x, t) − ε(x, t + δ))``: the negative branch sees a shifted time input.
    """
    return _perturbed(TimeShift(None, float(delta)), s, cond, base)


def _layers(layers: Sequence[int] | None) -> tuple[int, ...] | None:
    return None if layers is None else tuple(int(i) for i in layers)


# ------------------------------------------------------------------ several conditions
def independent(names: Sequence[str], weights: Sequence[WeightLike]) -> Expr:
    """Composable (independent) guidance — *Compositional Visual Generation with Composable
    Diffusion Models* (Liu et al., 2022); VoiceLDM's dual CFG (2023).

    ``ε̃ = ε_∅ + Σ_k w_k·(ε_{c_k} − ε_∅)``: order-free, K + 1 branches; ``w_k < 0`` negates.
    """
    names, weights = _pairs(names, weights)
    u = _uncond()
    return u + sum((w * (_cond(n) - u) for n, w in zip(names, weights, strict=True)), start=_zero())


def nested(names: Sequence[str], weights: Sequence[WeightLike]) -> Expr:
    """Nested (chained) guidance — *InstructPix2Pix* (Brooks et al., 2022).

    ``ε̃ = ε(∅,∅) + s_1·(ε(c1,∅) − ε(∅,∅)) + s_2·(ε(c1,c2) − ε(c1,∅))``: order-sensitive,
    K + 1 branches (the prefix branches are shared).
    """
    names, weights = _pairs(names, weights)
    prev: Branch = _uncond()
    out: Expr = prev
    for i, w in enumerate(weights):
        nxt = _cond(*names[: i + 1])
        out = out + w * (nxt - prev)
        prev = nxt
    return out


def joint(names: Sequence[str], w: WeightLike) -> Expr:
    """Joint CFG — *STIV* (2024): ``ε̃ = ε(∅,∅) + w·(ε(c1,c2) − ε(∅,∅))``. 2 branches."""
    return cfg(tuple(names), w)


def double(style: str, text: str, alpha: WeightLike, beta: WeightLike) -> Expr:
    """Double CFG on logits — *Audio Conditioning for Music Generation via Discrete Bottleneck
    Features* (MusicGen-style, 2024).

    ``ℓ̃ = ℓ_∅ + α·[ℓ_s + β·(ℓ_{t,s} − ℓ_s) − ℓ_∅]``: 3 branches (3 KV caches for AR).
    """
    u, s, ts = _uncond(), _cond(style), _cond(style, text)
    return u + alpha * (s + beta * (ts - s) - u)


def _pairs(names: Sequence[str], weights: Sequence[WeightLike]) -> tuple[list[str], list]:
    names, weights = ([names] if isinstance(names, str) else list(names)), list(weights)
    if len(names) != len(weights):
        raise ValueError(f"{len(names)} conditions {names} but {len(weights)} weights {weights}")
    if not names:
        raise ValueError("at least one condition is needed")
    return names, weights


def _zero() -> Expr:
    from framework.guidance.expr import Linear

    return Linear(())
