"""Peak memory of a call, on a GPU or the CPU, to check that sampling a pipeline through the
guidance engine holds no more than the pipeline's own call (``benchmarks/pretrained_overhead.py``,
``tests/pretrained/test_pretrained_memory.py``)."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["LiveTensorPeak", "peak_bytes"]


class LiveTensorPeak(TorchDispatchMode):
    """The peak bytes of tensor storage a call creates on the CPU (``torch.cuda`` has its own
    counter; the CPU allocator has none): every storage an operator's output brings into being is
    counted from then until the last tensor on it is freed; views and in-place results of existing
    storage (weights, inputs) add nothing. Tensors made outside the dispatcher (``from_numpy``) are
    not seen."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list[int]] = {}  # storage pointer → [bytes, tensors on it]
        self.tracked: set[int] = set()  # ids of the tensors followed
        self.now = self.peak = 0

    def _freed(self, ptr: int, tid: int) -> None:
        self.tracked.discard(tid)
        entry = self.live.get(ptr)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                self.now -= entry[0]
                del self.live[ptr]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage().data_ptr() for a in tree_flatten((args, kwargs))[0]
                  if isinstance(a, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or id(t) in self.tracked:
                continue
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr == 0 or (ptr in inputs and ptr not in self.live):
                continue
            if ptr in self.live:
                self.live[ptr][1] += 1
            else:
                self.live[ptr] = [storage.nbytes(), 1]
                self.now += storage.nbytes()
                self.peak = max(self.peak, self.now)
            self.tracked.add(id(t))
            weakref.finalize(t, self._freed, ptr, id(t))
        return out


def peak_bytes(fn: Callable[[], Any], dev: torch.device) -> int:
    """Peak bytes allocated while ``fn()`` runs: ``torch.cuda.max_memory_allocated`` on a GPU,
    :class:`LiveTensorPeak` on the CPU."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        fn()
        torch.cuda.synchronize(dev)
        return int(torch.cuda.max_memory_allocated(dev)) - base
    tracker = LiveTensorPeak()
    with tracker:
        fn()
    return tracker.peak
