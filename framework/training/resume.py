"""What exact resumption needs beyond Lightning's own state: random states and the data order.

Lightning's checkpoints restore the weights, the optimizer, the LR scheduler, the loop counters and
callbacks' state (EMA included), but not the random number generators that condition dropout,
noise levels and noise draw from, nor where the sampler was within its epoch. :func:`rng_state`
and :func:`set_rng_state` capture and restore the Python, NumPy and torch (CPU and CUDA) generators
as tensors and plain data (so ``weights_only`` loading reads them), and :class:`EpochBatches` is a
shuffling batch sampler whose order depends only on ``(seed, epoch)`` and whose position is part of
the data loader's state (:class:`ResumableLoader`), which Lightning saves and restores.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Sampler

__all__ = ["EpochBatches", "ResumableLoader", "gather_objects", "rng_state", "set_rng_state"]


def rng_state() -> dict[str, Any]:
    """The Python, NumPy and torch random states (tensors and plain data only)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (the legacy global state)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["gauss"]))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every process, in rank order (``[obj]`` outside a process group). A collective:
    every process of the group must call it."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


class EpochBatches(BatchSampler):
    """Batches of a fresh shuffle of ``0..n-1`` every epoch, the order depending on ``(seed, epoch)``
    alone; the last incomplete batch is dropped. Resumable mid-epoch.

    ``state_dict()`` is ``{"epoch", "position"}`` (batches already handed out in that epoch). A new
    iteration continues the epoch where it stopped, or starts the next one once it is complete.
    Handing out a batch *is* consuming it only when batches are not fetched ahead: single-process
    loading (``num_workers=0``) with a sized loader, which Lightning does not prefetch.

    With several processes, Lightning injects its ``DistributedSampler`` as ``sampler`` (this is a
    ``BatchSampler`` with a ``sampler`` argument, so Lightning re-creates it with one); only its
    ``num_replicas`` and ``rank`` are read. Each step's *global* batch of ``batch_size × replicas``
    indices is then the single-process order's batch of that size, and process ``rank`` takes its
    ``rank``-th slice: two processes with ``batch_size`` 32 see exactly the batches one process sees
    with 64, and their position resumes the same way.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, sampler: Sampler | None = None) -> None:
        self.replicas = int(getattr(sampler, "num_replicas", 1))
        self.rank = int(getattr(sampler, "rank", 0))
        if batch_size < 1 or n < batch_size * self.replicas:
            raise ValueError(f"{n} samples do not fill one batch of {batch_size}"
                             + (f" on each of {self.replicas} processes" if self.replicas > 1 else ""))
        self.n, self.batch_size, self.seed, self.sampler = int(n), int(batch_size), int(seed), sampler
        self.drop_last = True
        self.epoch, self.position = 0, 0

    def __len__(self) -> int:
        return self.n // (self.batch_size * self.replicas)

    def order(self, epoch: int) -> torch.Tensor:
        """This process's shuffled indices of epoch ``epoch``, ``[len(self), batch_size]``."""
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))
        per_step = self.batch_size * self.replicas
        return perm[:len(self) * per_step].view(len(self), self.replicas, self.batch_size)[:, self.rank]

    def __iter__(self) -> Iterator[list[int]]:
        if self.position >= len(self):  # the previous epoch was used up
            self.epoch, self.position = self.epoch + 1, 0
        batches = self.order(self.epoch)
        while self.position < len(self):
            self.position += 1
            yield batches[self.position - 1].tolist()

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


class ResumableLoader(DataLoader):
    """A ``DataLoader`` over :class:`EpochBatches` whose state (Lightning saves it with the fit loop
    and gives it back on resume) is the batch sampler's epoch and position."""

    def state_dict(self) -> dict[str, Any]:
        return self.batch_sampler.state_dict() if isinstance(self.batch_sampler, EpochBatches) else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state and isinstance(self.batch_sampler, EpochBatches):
            self.batch_sampler.load_state_dict(state)
