"""Batched evaluation of branches: every branch of one network in one forward (chunked under
``max_batch`` rows), each with the condition batch it sees (kept, replaced, independent, noised or
null), its time shift and its perturbation; an exact output cache for unchanged inputs."""

from __future__ import annotations

from collections.abc import Callable

import torch

from framework.core.conditions import ConditionError, Conditions, ConditionSpec
from framework.guidance.branches import KEEP, Branch, Independent, Noised, Replace, TimeShift
from framework.guidance.spaces import SpaceConverter
from framework.guidance.state import GuidanceState, Perturbations

__all__ = ["BranchBatching"]

ModelFn = Callable[..., torch.Tensor]


def _same_inputs(a: tuple, b: tuple) -> bool:
    """Whether two packed forwards ``(x, t, conditions, perturbations)`` are exactly equal."""
    (xa, ta, ca, pa), (xb, tb, cb, pb) = a, b
    if not (torch.equal(xa, xb) and torch.equal(ta, tb)) or ca.values.keys() != cb.values.keys():
        return False
    if any(not torch.equal(ca.values[k], cb.values[k]) or not torch.equal(ca.present[k], cb.present[k])
           for k in ca.values):
        return False
    if (pa is None) != (pb is None):
        return False
    return pa is None or (pa.table == pb.table and torch.equal(pa.ids, pb.ids))


class BranchBatching:
    """The batched forwards of :class:`~framework.guidance.engine.Guider` (its base class)."""

    models: dict[str, ModelFn]
    converter: SpaceConverter
    specs: dict[str, ConditionSpec] | None
    max_batch: int | None
    reuse_unchanged: bool
    _replacements: dict[tuple[str, Replace], torch.Tensor]

    def _forward(self, network: str, branches: list[Branch], x: torch.Tensor, t: torch.Tensor,
                 tau: float, conditions: Conditions, state: GuidanceState,
                 shuffle: dict[int, torch.Tensor], branch_rows: list[torch.Tensor | None] | None = None
                 ) -> tuple[torch.Tensor, int]:
        """One batched forward of every branch of one network → ``[Σ_b rows_b, ...]``, branch by
        branch: ``B`` rows each, or the rows ``branch_rows[i]`` (long indices) of branch ``i``."""
        B, k = x.shape[0], len(branches)
        branch_rows = branch_rows or [None] * k
        compact = any(r is not None for r in branch_rows)
        counts = [B if r is None else r.numel() for r in branch_rows]
        if not compact:
            xs = x if k == 1 else torch.cat([x] * k)  # (cat: a fraction of repeat's fixed cost)
            if k == 1:
                ts = t
            elif t.ndim == 1 and t.stride(0) == 0:  # one time broadcast to every row: keep it so
                ts = t.as_strided((k * B,), (0,))
            else:
                ts = torch.cat([t] * k)
        else:
            xs = torch.cat([x if r is None else x[r] for r in branch_rows])
            ts = torch.cat([t if r is None else t[r] for r in branch_rows])
        shifts = [b.perturbation.delta if isinstance(b.perturbation, TimeShift) else 0.0
                  for b in branches]
        if any(shifts):
            ts = ts + torch.tensor(shifts, dtype=ts.dtype if ts.is_floating_point() else
                                   torch.float32, device=ts.device).repeat_interleave(
                torch.tensor(counts, device=ts.device))
            if self.converter.time_range is not None:  # e.g. t + 50 past the last diffusion step
                ts = ts.clamp(*self.converter.time_range)
        # whole-batch conditions first, then the rows: ICG shuffles and prior draws do not
        # depend on which rows a branch runs on
        conds = self._packed_conditions(network, branches, branch_rows, conditions, tau, state, shuffle)
        table = tuple(dict.fromkeys(b.perturbation for b in branches
                                    if b.perturbation is not None
                                    and not isinstance(b.perturbation, TimeShift)))
        perturb = None
        if table:
            ids = torch.tensor([table.index(b.perturbation) if b.perturbation in table else -1
                                for b in branches], device=x.device).repeat_interleave(
                torch.tensor(counts, device=x.device))
            perturb = Perturbations(ids, table)
        inputs = (xs, ts, conds, perturb)
        reuse = self.reuse_unchanged and not conds.cads and not torch.is_grad_enabled()
        if reuse and network in state.last_forward and _same_inputs(state.last_forward[network][0], inputs):
            return state.last_forward[network][1], 0  # 0 calls: nothing was evaluated
        model = self.models[network]
        rows = sum(counts)
        step = self.max_batch or rows
        aware = {}
        if getattr(model, "branch_aware", False):
            # the network keeps per-branch state (e.g. KV caches) and must see whole branches
            if step < rows:
                raise ValueError(f"network {network!r} keeps per-branch state (KV caches) and cannot be "
                                 f"chunked: max_batch={self.max_batch} < {rows} rows")
            aware["branches"] = tuple(branches)
            if compact:
                if not getattr(model, "row_aware", False):
                    raise ValueError(f"network {network!r} keeps per-branch state but cannot follow "
                                     f"branches evaluated on part of the batch (per-sample adaptive "
                                     f"guidance); give it a row_aware rows= argument, or use "
                                     f"adaptive(..., per_sample=False)")
                full = torch.arange(B, device=x.device)
                aware["rows"] = tuple(full if r is None else r for r in branch_rows)
        outs = []
        for lo in range(0, rows, step):
            hi = min(rows, lo + step)
            sl = slice(lo, hi)
            kwargs = dict(aware)
            if perturb is not None:
                kwargs["perturbations"] = Perturbations(perturb.ids[sl], perturb.table)
            whole = (lo, hi) == (0, rows)
            c = conds if whole else conds.index(sl)
            try:
                out = model(xs, ts, c, **kwargs) if whole else model(xs[sl], ts[sl], c, **kwargs)
            except TypeError as e:
                if perturb is not None and "perturbations" in str(e):
                    raise TypeError(f"network {network!r} does not accept perturbations, but "
                                    f"branches {[repr(b) for b in branches if b.perturbation]} "
                                    f"need them: {e}") from e
                raise
            if out.shape[0] != hi - lo:
                raise ValueError(f"network {network!r} returned {out.shape[0]} rows for a batch "
                                 f"of {hi - lo} (branches {[repr(b) for b in branches]})")
            outs.append(out)
        out = outs[0] if len(outs) == 1 else torch.cat(outs)
        if reuse:
            state.last_forward[network] = (inputs, out)
        return out, len(outs)

    def _packed_conditions(self, network: str, branches: list[Branch],
                           branch_rows: list[torch.Tensor | None], conditions: Conditions, tau: float,
                           state: GuidanceState, shuffle: dict[int, torch.Tensor]) -> Conditions:
        """The branches' condition batches, concatenated (``[Σ_b rows_b]``). Every step of a run that
        passes the same ``conditions`` object with the same branches on all rows, each keeping or
        nulling its conditions (nothing drawn, replaced or varying with τ), gets the same packed
        object: built once per run, and networks may cache what they derive from it by identity."""
        key = (network, tuple(branches))
        full = all(r is None for r in branch_rows)
        last = state.packed.get(key)
        if full and last is not None and last[0] is conditions:  # stored only when static
            return last[1]
        static = full and all(b.value_of(name) in (None, KEEP) for b in branches for name in conditions.names)
        parts = [self._branch_conditions(b, conditions, tau, state, shuffle) for b in branches]
        conds = Conditions.cat([c if r is None else c.index(r)
                                for c, r in zip(parts, branch_rows, strict=True)])
        if static:
            state.packed[key] = (conditions, conds)
        return conds

    def _branch_conditions(self, branch: Branch, conds: Conditions, tau: float,
                           state: GuidanceState, shuffle: dict[int, torch.Tensor]) -> Conditions:
        """The condition batch one branch sees: kept, replaced, independent, noised or null."""
        B = conds.batch_size
        values, present, cads = dict(conds.values), {}, {}
        for name in conds.names:
            v = branch.value_of(name)
            dev = conds.values[name].device
            if v is None:
                present[name] = torch.zeros(B, dtype=torch.bool, device=dev)
            elif v is KEEP:
                present[name] = conds.present[name]
            elif isinstance(v, Replace):
                values[name] = self._replacement(name, v, conds.values[name])
                present[name] = torch.ones(B, dtype=torch.bool, device=dev)
            elif isinstance(v, Independent):
                values[name], present[name] = self._independent(name, v, conds, state, shuffle)
            elif isinstance(v, Noised):
                present[name] = conds.present[name]
                g = min(max(v.gamma(tau), 0.0), 1.0)
                cads[name] = torch.tensor([[g ** 0.5, v.s, v.psi]], device=dev).expand(B, 3)
        return Conditions(values, present, cads, state.generator)

    def _replacement(self, name: str, rep: Replace, like: torch.Tensor) -> torch.Tensor:
        key = (name, rep)
        if key not in self._replacements:
            if isinstance(rep.value, torch.Tensor):
                value = rep.value
            elif self.specs is not None:
                value = self.specs[name].encode(rep.value, 1)[0]
            else:
                value = torch.as_tensor(rep.value)
            self._replacements[key] = value.to(like.device)
        value = self._replacements[key]
        if value.shape == like.shape:
            return value.to(like.dtype)
        if value.shape != like.shape[1:]:
            raise ConditionError(f"replacement for condition {name!r} has shape "
                                 f"{tuple(value.shape)}; one sample's value has shape "
                                 f"{tuple(like.shape[1:])}")
        return value.to(like.dtype).expand_as(like)

    def _independent(self, name: str, ind: Independent, conds: Conditions, state: GuidanceState,
                     shuffle: dict[int, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        B = conds.batch_size
        value, present = conds.values[name], conds.present[name]
        if ind.sampler == "prior":
            n = len(self.specs[name].labels)
            draw = torch.randint(n, (B,), generator=state.generator).to(value.device)
            return draw, torch.ones_like(present)
        if B < 2:
            raise ConditionError(f"ICG: independent('shuffle') for {name!r} needs a batch of at "
                                 f"least 2 samples to shuffle; use independent('prior')")
        # a random cyclic shift is a derangement: no sample keeps its own condition. One shift per
        # step for every shuffled condition, so together they come from one other sample.
        if B not in shuffle:
            shift = int(torch.randint(1, B, (1,), generator=state.generator))
            shuffle[B] = (torch.arange(B) + shift) % B
        perm = shuffle[B]
        return value[perm.to(value.device)], present[perm.to(present.device)]
