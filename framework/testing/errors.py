"""The failure every contract check raises."""

from __future__ import annotations

__all__ = ["ContractError", "require"]


class ContractError(AssertionError):
    """A plugin that breaks the contract (an ``AssertionError``, so pytest shows it as a failure)."""


def require(ok: bool, message: str) -> None:
    """Raise :class:`ContractError` with ``message`` unless ``ok``."""
    if not ok:
        raise ContractError(message)
