"""Autoregressive next-token models with per-branch KV caches.

Training is next-token cross-entropy with a BOS token (id ``V``) in front. Sampling emits one
token per step: guidance combines per-branch log-probabilities of the next token, the family
renormalises (``log_softmax``) and only then applies temperature, top-k and top-p — guidance
acts on the model's distributions, not on the filtered ones.

Every guidance branch is a distinct conditioning of the same prefix, so it needs its own KV
cache. :class:`BranchCaches` keeps them as row blocks of one batched cache: while the set of
branches is unchanged each step feeds only the new token; a branch that stops being needed
(a guidance interval ends, adaptive guidance switches) is sliced out; a branch that appears
is prefilled over the prefix. Per-sample adaptive guidance runs a branch on part of the batch:
the rows that left are sliced out of that branch's cache block (``rows=``).

Networks follow the backbone's contract: ``lm(tokens [N, L], t, conditions, cache=..., [perturbations])
-> logits [N, L, V]`` and ``lm.new_cache()``; caches support ``select(rows)``, ``length`` and
``type(cache).cat(list)``.

Prompts of different lengths (a list of token-id sequences) are left-padded: padding is
:data:`PAD` (``-1``) in the family's state, and the network receives
``attention_mask [N, S]`` (cached + new tokens; 0 at padding) with the padding replaced by
token 0, so a padded row decodes what it would decode alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from framework.core.conditions import Conditions, ConditionSpec
from framework.core.dropout import DropoutSpec
from framework.generators.base import Family, StepCallback, progress_tau
from framework.generators.delay import delay, pad_mask, undelay
from framework.guidance import GuidanceState, Guider, Perturbations
from framework.guidance.branches import Branch
from framework.guidance.expr import Expr
from framework.guidance.ops.cost_grad import CostFn
from framework.guidance.spaces import DiscreteSpaces

__all__ = ["PAD", "Autoregressive", "BranchCaches", "FirstStepMask", "filter_logprobs"]

#: Left padding of ragged prompts in the state (never fed to a network: see the module docstring).
PAD = -1


class FirstStepMask:
    """Wraps a network: the ``banned`` token ids get −inf logits in every branch until
    :attr:`active` is cleared (after the first sampling step), e.g. to keep the first token after a
    prompt that ends a word from continuing that word. ``banned`` is ``[V]`` bool (every sample) or
    ``[B, V]`` (per sample; the network's rows are ``B``-row blocks, one per branch). Other
    attributes are the network's."""

    def __init__(self, net: Any, banned: torch.Tensor) -> None:
        self.net, self.banned, self.active = net, banned.bool(), True

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = self.net(*args, **kwargs)  # logits [rows, ..., V]
        if not self.active:
            return out
        mask = self.banned.to(out.device)
        if mask.ndim == 2:
            mask = mask.repeat(out.shape[0] // mask.shape[0], 1).view(out.shape[0], *[1] * (out.ndim - 2), -1)
        return out.masked_fill(mask, -torch.inf)

    def __getattr__(self, name: str) -> Any:  # new_cache, ... (only called for missing attributes)
        return getattr(self.net, name)


class BranchCaches:
    """Wraps one network for one sampling run; keeps a KV cache per guidance branch."""

    branch_aware = True
    row_aware = True

    def __init__(self, lm: Any) -> None:
        self.lm = lm
        self.cache: Any = None
        self.order: tuple[Branch, ...] = ()
        self.rows: tuple[torch.Tensor, ...] | None = None  # batch rows per branch block (None: all)
        self.length = 0  # tokens already in the cache
        self._full: int | None = None  # rows per branch when the last call ran every branch on all rows
        self._padded = False  # whether the cached prefix has left padding

    def _call(self, tokens, t, conditions, perturbations, cache, mask=None):
        kw = {"perturbations": perturbations} if perturbations is not None else {}
        if mask is not None:  # left-padded prompts
            kw["attention_mask"] = mask
            tokens = tokens.clamp(min=0)
        try:
            return self.lm(tokens, t, conditions, cache=cache, **kw)
        except TypeError as e:
            if mask is not None and "attention_mask" in str(e):
                raise TypeError(f"prompts of different lengths are left-padded, but network "
                                f"{type(self.lm).__name__} takes no attention_mask: {e}") from e
            raise

    def _reorder(self, x, t, conditions: Conditions, perturbations: Perturbations | None,
                 branches: tuple[Branch, ...], rows: tuple[torch.Tensor, ...]) -> None:
        old_rows = self.rows or ()
        starts = [0]
        for r in old_rows:
            starts.append(starts[-1] + r.numel())
        new_starts = [0]
        for r in rows:
            new_starts.append(new_starts[-1] + r.numel())
        blocks = []
        for j, b in enumerate(branches):
            if self.cache is not None and b in self.order:
                i = self.order.index(b)
                have, want = old_rows[i], rows[j]
                pos = torch.searchsorted(have, want)  # rows are sorted batch indices
                if bool((pos < have.numel()).all()) and bool((have[pos.clamp(max=have.numel() - 1)]
                                                              == want).all()):
                    blocks.append(self.cache.select(starts[i] + pos))
                    continue
            cache = self.lm.new_cache()
            if self.length > 0:  # a branch (or rows of it) joining mid-way: prefill over the prefix
                rows_j = slice(new_starts[j], new_starts[j + 1])
                p = (None if perturbations is None
                     else Perturbations(perturbations.ids[rows_j], perturbations.table))
                prefix = x[rows_j, :self.length]
                self._call(prefix, t[rows_j], conditions.index(rows_j), p, cache, _padding_mask(prefix))
            blocks.append(cache)
        self.cache = type(blocks[0]).cat(blocks)
        self.order, self.rows = branches, rows

    def __call__(self, x: torch.Tensor, t: torch.Tensor, conditions: Conditions,
                 perturbations: Perturbations | None = None, branches: tuple[Branch, ...] = (),
                 rows: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """Next-token logits ``[N, 1, V]`` of ``x`` ``[N, S]``: the rows of each branch's block,
        ``B`` each, or ``rows[i]`` (sorted long batch indices) for branch ``i``."""
        if not branches:
            raise ValueError("BranchCaches needs the guidance engine's branch layout")
        full = None
        if rows is None:
            full = x.shape[0] // len(branches)
            if full == self._full and branches == self.order:  # every row of the same branches again
                rows = self.rows
            else:
                every = torch.arange(full, device=x.device)
                rows = tuple(every for _ in branches)
        if sum(r.numel() for r in rows) != x.shape[0]:
            raise ValueError(f"rows per branch sum to {sum(r.numel() for r in rows)}, x has {x.shape[0]}")
        if branches != self.order or not (rows is self.rows or _same_rows(rows, self.rows)):
            self._reorder(x, t, conditions, perturbations, branches, rows)
        self._full = full
        new = x[:, self.length:]
        # the cached prefix is fixed (as the KV cache assumes): only new tokens can add padding
        # (ids are ≥ 0 but for PAD, so one reduction of the new tokens tells)
        mask = _padding_mask(x) if self._padded or int(new.min()) <= PAD else None
        logits = self._call(new, t, conditions, perturbations, self.cache, mask)
        self._padded = self._padded or mask is not None
        self.length = x.shape[1]
        return logits[:, -1:]  # next-token logits [N, 1, V]


def _same_rows(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...] | None) -> bool:
    return b is not None and len(a) == len(b) and all(
        x.numel() == y.numel() and bool((x == y).all()) for x, y in zip(a, b, strict=True))


def _prompt_ids(row: Any, i: int) -> torch.Tensor:
    """One prompt as a 1-D tensor of ids (a list, tuple or tensor); never rounds floats."""
    try:
        ids = torch.as_tensor(row) if not isinstance(row, torch.Tensor) else row
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"prompt {i} is not a sequence of token ids: {e}") from None
    if ids.ndim > 1:
        raise ValueError(f"prompt {i} has shape {tuple(ids.shape)}; each prompt is a 1-D sequence of ids")
    if ids.ndim == 0 or (ids.numel() == 0 and not isinstance(row, torch.Tensor)):
        ids = ids.reshape(-1).long() if ids.numel() == 0 else ids.reshape(1)
    return ids


def _padding_mask(x: torch.Tensor) -> torch.Tensor | None:
    """``[N, S]`` bool, False at left padding (``None`` when nothing is padded)."""
    pad = x == PAD if x.ndim == 2 else (x == PAD).any(-1)
    return ~pad if bool(pad.any()) else None


def filter_logprobs(logp: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                    top_p: float | None = None) -> torch.Tensor:
    """Temperature, top-k and nucleus filtering of normalised log-probs ``[B, V]`` (−inf = removed)."""
    logp = logp / temperature
    if top_k is not None and top_k < logp.shape[-1]:
        kth = logp.topk(top_k, dim=-1).values[..., -1:]
        logp = logp.masked_fill(logp < kth, -torch.inf)
    if top_p is not None and top_p < 1.0:
        sorted_lp, idx = logp.sort(dim=-1, descending=True)
        cum = sorted_lp.softmax(-1).cumsum(-1)
        drop = cum - sorted_lp.softmax(-1) >= top_p  # keep the smallest set reaching top_p
        logp = logp.masked_fill(drop.scatter(-1, idx, drop), -torch.inf)
    return torch.log_softmax(logp, dim=-1)


class Autoregressive(Family):
    """Next-token language model family.

    Args:
        vocab_size: data tokens ``V``; the BOS id is ``V`` (the network embeds ``V + 1`` ids).
        temperature: 0 means greedy decoding.
        top_k, top_p: optional filters applied after guidance and renormalisation.
        eos_id: once emitted, a sequence keeps emitting it.
    """

    name = "autoregressive"
    native_space = "logits"
    output_space = "logprobs"

    def __init__(self, vocab_size: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, eos_id: int | None = None, codebooks: int = 1) -> None:
        if temperature < 0:
            raise ValueError(f"temperature must be ≥ 0 (0 = greedy), got {temperature}")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if codebooks < 1 or (codebooks > 1 and eos_id is not None):
            raise ValueError(f"codebooks must be ≥ 1 (and EOS is single-stream only), got {codebooks}")
        self.vocab_size, self.bos_id = int(vocab_size), int(vocab_size)
        self.temperature, self.top_k, self.top_p, self.eos_id = float(temperature), top_k, top_p, eos_id
        self.codebooks = int(codebooks)
        self.pad_id = self.vocab_size + 1  # the delay pattern's padding (multi-codebook only)
        self.converter = DiscreteSpaces()

    @property
    def input_vocab(self) -> int:
        """Token ids the network embeds: data, BOS, and the delay padding with several codebooks."""
        return self.vocab_size + (2 if self.codebooks > 1 else 1)

    def with_bos(self, tokens: torch.Tensor) -> torch.Tensor:
        """Prefix a BOS step: ``[B, L]`` → ``[B, L + 1]`` (``[B, L, K]`` → ``[B, L + 1, K]``)."""
        return torch.cat([torch.full_like(tokens[:, :1], self.bos_id), tokens], dim=1)

    def loss(self, model, x0: torch.Tensor, conditions: Conditions,
             generator: torch.Generator | None = None) -> torch.Tensor:
        return self.nll(model, x0, conditions).mean()

    def nll(self, model, x0: torch.Tensor, conditions: Conditions) -> torch.Tensor:
        """Per-sequence mean next-token NLL in nats, ``[B]`` (``exp`` of the mean is perplexity).

        ``x0``: ``[B, L]`` tokens, or ``[B, K, T]`` codes with several codebooks (delayed here;
        the pattern's padding is not scored).
        """
        if bool(((x0 < 0) | (x0 >= self.vocab_size)).any()):
            raise ValueError(f"token ids must be in 0..{self.vocab_size - 1}")
        target = x0 if self.codebooks == 1 else delay(x0, self.pad_id).transpose(1, 2)  # [B, T+K-1, K]
        logits = model(self.with_bos(target)[:, :-1], None, conditions)
        valid = target != self.pad_id
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                              target.clamp(max=self.vocab_size - 1).reshape(-1), reduction="none")
        nll = nll.view_as(target) * valid
        dims = tuple(range(1, target.ndim))
        return nll.sum(dims) / valid.sum(dims)

    def training_inputs(self, x0, generator=None):
        """Teacher forcing: BOS + the sequence without its last token; every position predicts the
        next token (the delay pattern's padding does not count). ``t`` is unused (zeros)."""
        if bool(((x0 < 0) | (x0 >= self.vocab_size)).any()):
            raise ValueError(f"token ids must be in 0..{self.vocab_size - 1}")
        target = x0 if self.codebooks == 1 else delay(x0, self.pad_id).transpose(1, 2)
        counts = None if self.codebooks == 1 else target != self.pad_id
        return self.with_bos(target)[:, :-1], torch.zeros(x0.shape[0], device=x0.device), counts

    def guider(self, guidance: Expr | str, models: Any | Mapping[str, Any], *,
               specs: Mapping[str, ConditionSpec] | None = None, max_batch: int | None = None,
               dropout: DropoutSpec | None = None, strict: bool = False,
               costs: Mapping[str, CostFn] | None = None) -> Guider:
        nets = dict(models) if isinstance(models, Mapping) else {"main": models}
        return super().guider(guidance, {k: BranchCaches(m) for k, m in nets.items()}, specs=specs,
                              max_batch=max_batch, dropout=dropout, strict=strict, costs=costs)

    def init_state(self, n: int, shape: tuple[int, ...], generator, device,
                   init: torch.Tensor | Sequence[Sequence[int] | torch.Tensor] | None = None) -> torch.Tensor:
        """BOS, or BOS + prompt: ``init`` is ``[n, P]`` token ids, or ``n`` sequences of different
        lengths, left-padded with :data:`PAD` to ``[n, 1 + max P]``."""
        K = self.codebooks
        if K > 1 and (len(shape) != 2 or shape[0] != K):
            raise ValueError(f"a {K}-codebook model samples codes of shape ({K}, T), got {shape}")
        if init is None:
            return torch.full((n, 1) if K == 1 else (n, 1, K), self.bos_id, dtype=torch.long, device=device)
        if K > 1:
            raise ValueError("prompts are supported for single-stream tokens only")
        rows = list(init) if not isinstance(init, torch.Tensor) else None
        if rows is not None and any(isinstance(r, str) for r in rows):
            raise TypeError("text prompts need the model's tokenizer: pass them to GenerativeModule.sample "
                            "(init=[...]) or encode them to token ids first")
        if isinstance(init, torch.Tensor) and init.ndim != 2:
            raise ValueError(f"a prompt tensor has shape [n, P]; got {tuple(init.shape)}")
        count = len(rows) if rows is not None else init.shape[0]
        if count != n:
            raise ValueError(f"prompt has {count} rows for {n} samples")
        seqs = [_prompt_ids(r, i) for i, r in enumerate(rows)] if rows is not None else list(init.cpu())
        for i, r in enumerate(seqs):
            if r.is_floating_point() or r.dtype == torch.bool:
                raise ValueError(f"prompt {i} must hold integer token ids, got dtype {r.dtype}")
            r = seqs[i] = r.long()
            if r.numel() and bool(((r < 0) | (r >= self.vocab_size)).any()):
                raise ValueError(f"prompt {i} has token ids outside 0..{self.vocab_size - 1}: "
                                 f"{sorted(set(r[(r < 0) | (r >= self.vocab_size)].tolist()))[:5]}")
        longest = max(r.numel() for r in seqs)
        x = torch.full((n, 1 + longest), PAD, dtype=torch.long)
        for i, r in enumerate(seqs):  # left padding: every prompt ends where decoding starts
            x[i, longest - r.numel()] = self.bos_id
            x[i, longest - r.numel() + 1:] = r
        return x.to(device)

    def progress_total(self, steps: int) -> int:
        """``steps`` frames take ``steps + K − 1`` decoding steps (the delay pattern's extra ones)."""
        return steps + self.codebooks - 1

    def run(self, guider: Guider, state: GuidanceState, x: torch.Tensor, conditions: Conditions,
            steps: int, generator, bar, callback: StepCallback | None) -> torch.Tensor:
        B, start, K = x.shape[0], x.shape[1], self.codebooks
        total = self.progress_total(steps)  # the delay pattern needs K − 1 extra steps
        pads = pad_mask(K, steps, x.device) if K > 1 else None
        t = torch.zeros(B, device=x.device)
        done = torch.zeros(B, dtype=torch.bool, device=x.device)
        for i in range(total):
            out = guider.step(x, t, progress_tau(i, total), conditions, state)
            # renormalise (in float32): [B, V] or [B, K, V]
            logp = torch.log_softmax(out.denoise[:, -1], dim=-1, dtype=torch.float32)
            if self.temperature == 0:
                nxt = logp.argmax(-1)
            else:
                probs = filter_logprobs(logp.reshape(-1, logp.shape[-1]), self.temperature, self.top_k,
                                        self.top_p).exp()
                nxt = torch.multinomial(probs, 1, generator=generator).view(logp.shape[:-1]).to(x.device)
            if pads is not None:
                nxt = nxt.masked_fill(pads[i], self.pad_id)
            if self.eos_id is not None:
                nxt = torch.where(done, torch.full_like(nxt, self.eos_id), nxt)
                done |= nxt == self.eos_id
            x = torch.cat([x, nxt[:, None]], dim=1)
            bar.update(1)
            if callback is not None:
                callback(i, x, out)
            if self.eos_id is not None and bool(done.all()):  # every row ended: stop evaluating
                x = torch.cat([x, torch.full_like(x[:, :1], self.eos_id).expand(-1, total - 1 - i)], dim=1)
                break
        out_tokens = x[:, start:]
        return out_tokens if K == 1 else undelay(out_tokens.transpose(1, 2))
