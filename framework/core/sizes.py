"""Sizes a file declares are checked before memory is spent on them.

A checkpoint's hyper-parameters say how large its network is (width, depth, heads, a tokenizer's
codebook); a 1.5 KB file may ask for width 8192 or depth 10⁶. :func:`build_within` builds such a
network only when it has exactly the tensors the file holds: it is first built on PyTorch's
``meta`` device (shapes only, no memory), compared tensor by tensor with the weights present, and
only then built for real, so the memory it takes is the size of the weights the file already
brought. A depth larger than the number of tensors present is refused before even the meta build
(each layer owns at least one tensor).

:func:`expecting` tells :class:`~framework.model.generative.GenerativeModel` which weights the model it
is about to build must fit (``framework.model.checkpoints.build_model`` sets it while it rebuilds a
checkpoint's model); outside it nothing is compared, so training builds models as before.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

import torch

from framework.core.errors import UserError

__all__ = ["SizeError", "build_within", "check_within", "expecting"]

M = TypeVar("M", bound=torch.nn.Module)
_EXPECTED: contextvars.ContextVar[tuple[Mapping[str, torch.Tensor], str] | None] = \
    contextvars.ContextVar("polyguide_expected_weights", default=None)


class SizeError(UserError, ValueError):
    """A file declares sizes that disagree with the weights it holds, or that are out of bounds."""


@contextlib.contextmanager
def expecting(weights: Mapping[str, torch.Tensor], where: str) -> Iterator[None]:
    """Within this block, :func:`build_within` compares what it builds with ``weights``
    (a ``state_dict``); ``where`` names the file in errors."""
    token = _EXPECTED.set((weights, where))
    try:
        yield
    finally:
        _EXPECTED.reset(token)


def _shapes(weights: Mapping[str, torch.Tensor], prefix: str) -> dict[str, tuple[int, ...]]:
    return {k[len(prefix):]: tuple(v.shape) for k, v in weights.items()
            if isinstance(k, str) and k.startswith(prefix) and isinstance(v, torch.Tensor)}


def build_within(factory: Callable[[], M], prefix: str = "", depth: int | None = None,
                 weights: Mapping[str, torch.Tensor] | None = None, where: str | None = None) -> M:
    """``factory()``, built only if its tensors are exactly those of ``weights`` under ``prefix``
    (see :func:`check_within`; ``weights``/``where`` default to those of :func:`expecting`, and
    with neither ``factory()`` is simply called)."""
    if weights is None:
        expected = _EXPECTED.get()
        if expected is None:
            return factory()
        weights, where = expected
    check_within(factory, weights, prefix, depth, where)
    return factory()


def check_within(factory: Callable[[], torch.nn.Module], weights: Mapping[str, torch.Tensor],
                 prefix: str = "", depth: int | None = None, where: str | None = None) -> None:
    """Check that ``factory()`` would build exactly the tensors of ``weights`` under ``prefix``
    (only their shapes are read: ``meta`` tensors will do), without spending memory on it.

    ``depth`` (a declared number of layers) is refused above the number of tensors present before
    anything is built.

    Raises:
        SizeError: one line naming ``where``, the first tensor that differs and both shapes, or the
            constructor's own complaint (a negative size, zero heads).
    """
    where = where or "the file"
    present = _shapes(weights, prefix)
    if depth is not None and depth > max(1, len(present)):
        raise SizeError(f"{where}: declares {depth:,} layers but holds only {len(present)} tensors for them")
    try:
        with torch.device("meta"):
            probe = factory()
    except (ValueError, TypeError, RuntimeError, ZeroDivisionError, OverflowError) as e:
        text = " ".join(str(e).split()) or type(e).__name__
        raise SizeError(f"{where}: its sizes do not build a network: {text[:200]}") from None
    declared = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    for name, shape in declared.items():
        if name not in present:
            raise SizeError(f"{where}: declares a tensor {prefix}{name} {list(shape)} that the file "
                            f"does not hold")
        if present[name] != shape:
            raise SizeError(f"{where}: declares {prefix}{name} of shape {list(shape)} but holds "
                            f"{list(present[name])}")
    extra = sorted(set(present) - set(declared))
    if extra:
        raise SizeError(f"{where}: holds {len(extra)} tensors its sizes do not declare "
                        f"(e.g. {prefix}{extra[0]})")
