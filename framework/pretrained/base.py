"""What every wrapped pipeline shares: conditions by the pipeline's names, guided sampling through
a family's loop, decoded media, and the list of passes ``explain`` prints.

A :class:`PretrainedModel` holds the library's pipeline (or model) and calls its modules; it owns
no network or scheduler of its own. Subclasses say how raw condition values become tensors
(:meth:`conditions`), which networks the guidance engine calls (:meth:`networks`), what one
sample's state looks like (:meth:`sample_shape`) and how samples decode to media (:meth:`decode`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from framework.core.conditions import Conditions, ConditionSpec
from framework.generators import Family, SampleOutput
from framework.guidance.expr import Expr
from framework.guidance.ops.cost_grad import CostFn
from framework.guidance.state import step_statistics
from framework.guidance.syntax import parse
from framework.pretrained.loading import PretrainedError

__all__ = ["LastRows", "PretrainedModel", "last_rows", "prompt_rows"]


class LastRows:
    """What a network derived from the last condition batch it was given, for the next call with the
    same batch object: the guidance engine passes the same packed batch every step of a run while
    the branch layout holds (``Guider._packed_conditions``), so a pipeline's prompt rows are
    assembled once per run instead of once per step."""

    def __init__(self) -> None:
        self._last: tuple[Conditions, dict[Any, Any]] | None = None

    def get(self, conditions: Conditions, key: Any, make: Callable[[], Any]) -> Any:
        """``make()``, or its value from an earlier call with this ``key`` and the same ``conditions``
        object (the values of one batch are kept together; a new batch object drops them)."""
        last = self._last
        if last is None or last[0] is not conditions:
            last = self._last = (conditions, {})
        if key not in last[1]:
            last[1][key] = make()
        return last[1][key]


def last_rows(owner: Any) -> LastRows:
    """``owner``'s :class:`LastRows` (made on first use)."""
    return owner.__dict__.setdefault("_last_rows", LastRows())


def prompt_rows(conditions: Conditions, null: torch.Tensor, network: str) -> torch.Tensor:
    """Per row, the prompt a branch gives the network: ``text`` where kept, else
    ``negative_text`` where kept, else ``null`` (the pipeline's unconditional input,
    broadcastable to the values ``[N, S, D]``). A row keeping both is an error: ``network``
    takes one prompt."""
    text, neg = conditions.present["text"], conditions.present["negative_text"]
    if bool((text & neg).any()):
        raise PretrainedError(f"a branch that keeps both text and negative_text cannot be evaluated: the "
                              f"{network} takes one prompt; use e.g. cond(negative_text) + 3*(cond(text) - "
                              f"cond(negative_text))")
    values = conditions.values["text"]
    rows = torch.where(neg.view(-1, 1, 1), conditions.values["negative_text"], null.to(values.dtype))
    return torch.where(text.view(-1, 1, 1), values, rows)


class PretrainedModel:
    """A library pipeline behind polyguide's sampling API.

    Attributes:
        pipeline_class: the library's class name (``StableDiffusionPipeline``, ``musicgen``...).
        media: ``image`` or ``audio``: what :meth:`write` writes.
        specs: the conditions it takes, named as the pipeline names them.
        family: the family whose loop samples it (diffusers' scheduler / transformers' decoding
            inside).
        default_guidance: what the pipeline does by default, as an expression.
        default_steps: the pipeline's default number of steps (tokens for autoregressive models).
    """

    pipeline_class: str = ""
    media: str = "image"
    specs: dict[str, ConditionSpec]
    family: Family
    default_guidance: str = ""
    default_steps: int = 30

    # ------------------------------------------------------------------ what subclasses provide
    @property
    def device(self) -> torch.device:
        raise NotImplementedError

    def conditions(self, raw: Mapping[str, Any], n: int) -> Conditions:
        """Raw values (prompts as strings, images as files or tensors) → a batch of ``n``."""
        raise NotImplementedError

    def networks(self) -> dict[str, Any]:
        """Network name → ``fn(x, t, conditions) -> prediction`` for the guidance engine."""
        raise NotImplementedError

    def sample_shape(self, steps: int, conditions: Conditions) -> tuple[int, ...]:
        """One sample's state shape (latents ``(C, h, w)``, codes ``(K, T)``)."""
        raise NotImplementedError

    def decode(self, samples: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Samples → media: images ``[B, 3, H, W]`` in ``[0, 1]`` or audio ``[B, T]``."""
        raise NotImplementedError

    def passes(self) -> list[str]:
        """The library modules a sampling run calls, in order, for ``explain``."""
        raise NotImplementedError

    def write(self, media: torch.Tensor, out: Path, title: str | None = None) -> list[Path]:
        """Write decoded media as polyguide's own models do: PNGs (a grid and one per image) or
        WAVs (with a spectrogram grid and an HTML page)."""
        if self.media == "image":
            from modalities.image.writers import save_grid, save_images

            out.mkdir(parents=True, exist_ok=True)
            return [save_grid(media, out / "grid.png", title=title), *save_images(media, out)]
        from modalities.audio.writers import write_audio

        return write_audio(media, out, title=title, sample_rate=self.sample_rate)

    sample_rate: int = 0

    @property
    def costs(self) -> dict[str, CostFn]:
        """Costs its guidance can name without passing them (``cost(name, w)``)."""
        return {}

    # ------------------------------------------------------------------ shared
    def check_guidance(self, expr: Expr) -> None:
        """Every condition the guidance names is one this pipeline takes (else one line naming them)."""
        used = sorted({n for b in expr.branches() for n in b.names} - set(self.specs))
        if used:
            raise PretrainedError(f"the {self.pipeline_class} takes conditions "
                                  f"{', '.join(self.specs)}; the guidance names {', '.join(map(repr, used))}")

    def check_raw(self, raw: Mapping[str, Any]) -> None:
        unknown = sorted(set(raw) - set(self.specs))
        if unknown:
            raise PretrainedError(f"the {self.pipeline_class} takes conditions {', '.join(self.specs)}; "
                                  f"not {', '.join(map(repr, unknown))}")

    def guidance(self, guidance: Expr | str | None) -> Expr:
        """``guidance`` parsed (default :attr:`default_guidance`) and checked against :attr:`specs`."""
        expr = guidance if isinstance(guidance, Expr) else parse(guidance or self.default_guidance)
        self.check_guidance(expr)
        return expr

    @torch.no_grad()
    def sample(self, conditions: Conditions | Mapping[str, Any], guidance: Expr | str | None = None, *,
               n: int | None = None, steps: int | None = None, seed: int | None = None,
               progress: bool = False, callback=None, costs: Mapping[str, CostFn] | None = None,
               decode: bool = True, statistics: bool = False) -> SampleOutput:
        """Guided sampling of the pipeline's networks with the pipeline's scheduler / decoding.

        Args:
            conditions: raw values by the pipeline's names (``{"text": "a cat"}``), broadcast to
                ``n`` samples, or a :class:`Conditions` batch from :meth:`conditions`.
            guidance: an expression or its text (default :attr:`default_guidance`).
            steps: denoising steps, or tokens for autoregressive models (default :attr:`default_steps`).
            seed: seeds the one ``torch.Generator`` the pipeline would be given (``generator=``),
                so the same seed gives the pipeline's own samples under its own guidance.
            costs: cost name → ``fn(x0 [B, *shape], conditions) -> [B]`` for cost terms.
            decode: decode samples to :attr:`SampleOutput.media` (images / audio).
            statistics: also compare each step's guided and unguided predictions
                (``StepStats.guidance_norm`` / ``cosine``); off by default, as the pipeline's own
                call computes nothing of the kind (a few reductions and a host sync per step).

        Returns:
            :class:`SampleOutput`: ``samples`` (latents ``[n, C, h, w]`` or codes ``[n, K, T]``),
            per-step statistics and ``media``.
        """
        if not isinstance(conditions, Conditions):
            if n is None:
                raise ValueError("give n when conditions are raw values")
            self.check_raw(conditions)
            conditions = self.conditions(conditions, n)
        expr = self.guidance(guidance)
        steps = self.default_steps if steps is None else int(steps)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        shape = self.sample_shape(steps, conditions)
        try:
            with step_statistics(statistics):
                out = self.family.sample(self.networks(), expr, conditions, shape, steps, specs=self.specs,
                                         generator=gen, progress=progress, callback=callback,
                                         device=self.device, costs={**self.costs, **(costs or {})})
        finally:  # the run's prompt rows are not held past it (nor through the decoder)
            self.__dict__.pop("_last_rows", None)
        if decode:
            out.media = self.decode(out.samples, gen)
        return out

    def explain(self, guidance: Expr | str | None = None, steps: int | None = None) -> str:
        """The passes of one sampling run: the library modules called, in order, and per step the
        branches the guidance evaluates (one batched call of the denoiser / LM per network)."""
        from framework.guidance import Guider

        expr = self.guidance(guidance)
        guider = Guider(expr, {b.network: (lambda *a, **k: None) for b in expr.branches()} or
                        {"main": lambda *a, **k: None}, native_space=self.family.native_space,
                        converter=self.family.converter, specs=self.specs)
        state = guider.new_state()
        lines = [f"{self.pipeline_class}, sampled by the {self.family.name} family; guidance {expr!r}"]
        lines += [f"  {p}" for p in self.passes()]
        n = self.default_steps if steps is None else int(steps)
        for i in range(n):
            tau = i / max(1, n - 1)
            plan = guider.plan(tau, state)
            rows = "; ".join(f"{net}: " + ", ".join(map(repr, bs)) for net, bs in plan.items())
            if i < 3 or i == n - 1:
                nfe = sum(map(len, plan.values()))
                lines.append(f"  step {i:>3}: {nfe} branch(es) in one batched call — {rows}")
            elif i == 3:
                lines.append("  ...")
        return "\n".join(lines)
