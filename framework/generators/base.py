"""What every generator family shares: the sampling entry point and its result.

A family owns its training loss, its prediction spaces (a
:class:`~framework.guidance.spaces.SpaceConverter`) and its sampler loop; all of them
evaluate guidance through the same :class:`~framework.guidance.Guider`. No family
re-implements guidance.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from framework.core.conditions import Conditions, ConditionSpec
from framework.core.dropout import DropoutSpec
from framework.guidance import GuidanceState, GuidedOutput, Guider, StepStats
from framework.guidance.expr import Expr
from framework.guidance.given import check_given
from framework.guidance.ops.cost_grad import CostFn
from framework.guidance.spaces import SpaceConverter
from framework.guidance.syntax import parse

__all__ = ["Family", "SampleOutput", "StepCallback"]

#: ``callback(step, x, out)`` after every step: ``x`` is the updated state.
StepCallback = Callable[[int, torch.Tensor, GuidedOutput], None]
ModelFn = Callable[..., torch.Tensor]


@dataclass
class SampleOutput:
    """Samples and what producing them cost.

    Attributes:
        samples: ``[B, ...]`` final states (continuous data or token ids).
        stats: one :class:`StepStats` per step.
        seconds: wall time of the sampling loop.
        media: ``samples`` decoded to the modality's media (images, ...) when the model has a codec.
    """

    samples: torch.Tensor
    stats: list[StepStats] = field(default_factory=list)
    seconds: float = 0.0
    media: torch.Tensor | None = None

    @property
    def nfe(self) -> int:
        """Total branch evaluations (each a model evaluation of the whole batch)."""
        return sum(s.nfe for s in self.stats)

    @property
    def backward(self) -> int:
        """Total backward passes through the network (``through_model=True`` cost terms; each
        over one branch of the whole batch). See :class:`~framework.guidance.StepStats`."""
        return sum(s.backward for s in self.stats)

    @property
    def cost_evals(self) -> int:
        """Total cost evaluations with their gradient (cost terms of either kind)."""
        return sum(s.cost_evals for s in self.stats)

    @property
    def row_evals(self) -> int:
        """Rows evaluated, summed over branches and steps (exact under per-sample compaction)."""
        return sum(s.row_evals for s in self.stats)

    @property
    def nfe_rows(self) -> float:
        """Exact evaluations per sample: :attr:`row_evals` ÷ batch (= :attr:`nfe` unless per-sample
        adaptive guidance compacted the batch, or an output cache served some evaluations)."""
        return sum(s.nfe_rows for s in self.stats)

    @property
    def branches_per_step(self) -> list[int]:
        return [s.nfe for s in self.stats]


class Family:
    """Base class of the four families (diffusion, flow, masked, autoregressive).

    Subclasses set :attr:`native_space` (what the network predicts), :attr:`converter`,
    :attr:`output_space` (what the sampler integrates), and implement :meth:`loss`,
    :meth:`init_state` and :meth:`run`.
    """

    name: str = "family"
    native_space: str
    output_space: str
    converter: SpaceConverter

    # ------------------------------------------------------------------ training
    def loss(self, model: ModelFn, x0: torch.Tensor, conditions: Conditions,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """The scalar training loss of ``model`` on clean data ``x0`` ``[B, ...]``."""
        raise NotImplementedError

    def training_inputs(self, x0: torch.Tensor, generator: torch.Generator | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Network inputs drawn along this family's own training path, for targets other than
        the data's (guidance distillation, :mod:`framework.training.distill`).

        Returns ``(x_in, t, counts)``: the network's input (``[B, ...]``), its time ``[B]``, and
        bool ``[B, L]`` (``[B, L, K]`` with codebooks) marking the positions whose prediction the
        loss scores (``None``: all of them).
        """
        raise NotImplementedError(f"the {self.name} family does not expose its training inputs")

    # ------------------------------------------------------------------ sampling
    def guider(self, guidance: Expr | str, models: ModelFn | Mapping[str, ModelFn], *,
               specs: Mapping[str, ConditionSpec] | None = None, max_batch: int | None = None,
               dropout: DropoutSpec | None = None, strict: bool = False,
               costs: Mapping[str, CostFn] | None = None) -> Guider:
        """A :class:`Guider` for this family's spaces (text guidance is parsed)."""
        expr = parse(guidance) if isinstance(guidance, str) else guidance
        return Guider(expr, models, native_space=self.native_space, converter=self.converter,
                      specs=specs, max_batch=max_batch, output_space=self.output_space,
                      dropout=dropout, strict=strict, costs=costs)

    def sample(self, models: ModelFn | Mapping[str, ModelFn], guidance: Expr | str,
               conditions: Conditions, shape: tuple[int, ...], steps: int, *,
               specs: Mapping[str, ConditionSpec] | None = None,
               generator: torch.Generator | None = None, progress: bool = False,
               callback: StepCallback | None = None, max_batch: int | None = None,
               dropout: DropoutSpec | None = None, strict: bool = False,
               device: torch.device | str | None = None, init: torch.Tensor | None = None,
               costs: Mapping[str, CostFn] | None = None) -> SampleOutput:
        """Sample ``conditions.batch_size`` items of per-item ``shape`` with guidance.

        Args:
            models: the network (``"main"``) or networks by name (``"weak"`` for autoguidance).
            guidance: an expression or its text form.
            conditions: a batch of ``B`` condition values (what each sample asks for).
            shape: one sample's shape, e.g. ``(L, D)`` tokens or ``(C, H, W)`` pixels.
            steps: sampling steps (tokens for autoregressive models).
            generator: the random source (seeded for reproducible samples).
            progress: show a progress bar.
            callback: ``callback(step, x, out)`` after each step.
            init: a starting state instead of the family's default (noise, all-mask tokens,
                BOS): e.g. a partly masked sequence to infill, or an autoregressive prompt.
            costs: cost name → ``fn(x0 [B, *shape], conditions) -> [B]`` for the guidance's
                cost terms (``presets.cost``); a cost term naming none of them fails here,
                before sampling, listing the available ones.

        Returns:
            A :class:`SampleOutput` with samples ``[B, *shape]`` and per-step statistics.
        """
        if steps < 1:
            raise ValueError(f"steps must be ≥ 1, got {steps}")
        guider = self.guider(guidance, models, specs=specs, max_batch=max_batch, dropout=dropout,
                             strict=strict, costs=dict(costs or {}))
        check_given(guider.expr, conditions)  # before any work: no silently ignored condition
        device = torch.device(device) if device is not None else torch.device("cpu")
        conditions = conditions.to(device)
        state = guider.new_state(generator)
        start = time.perf_counter()
        with torch.no_grad():
            start_state = [self.init_state(conditions.batch_size, shape, generator, device, init)]
            bar = tqdm(total=self.progress_total(steps), disable=not progress, desc=f"{self.name} sampling",
                       leave=False)
            try:  # pop: the run owns the starting state; this frame does not hold it through every step
                x = self.run(guider, state, start_state.pop(), conditions, steps, generator, bar, callback)
            finally:
                bar.close()
        return SampleOutput(x, list(state.history), time.perf_counter() - start)

    def init_state(self, n: int, shape: tuple[int, ...], generator: torch.Generator | None,
                   device: torch.device, init: torch.Tensor | None = None) -> torch.Tensor:
        """The starting state ``[n, *shape]``: ``init`` if given (checked), else noise."""
        if init is not None:
            if tuple(init.shape) != (n, *shape):
                raise ValueError(f"init has shape {tuple(init.shape)}, expected {(n, *shape)}")
            return init.to(device)
        return randn((n, *shape), generator, device)

    def progress_total(self, steps: int) -> int:
        """How many sampler steps (progress-bar updates) ``steps`` takes: ``steps`` by default."""
        return steps

    def run(self, guider: Guider, state: GuidanceState, x: torch.Tensor, conditions: Conditions,
            steps: int, generator: torch.Generator | None, bar: tqdm,
            callback: StepCallback | None) -> torch.Tensor:
        """The sampler loop; calls ``guider.step`` once per step and returns final samples."""
        raise NotImplementedError


def progress_tau(i: int, steps: int) -> float:
    """Normalised progress of step ``i`` of ``steps``: 0 at the first step, 1 at the last."""
    return i / (steps - 1) if steps > 1 else 1.0


def randn(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Gaussian noise drawn on the CPU generator (reproducible across devices), moved to ``device``."""
    return torch.randn(shape, generator=generator).to(device)
