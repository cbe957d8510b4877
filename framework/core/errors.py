"""User errors: mistakes a user can fix, as opposed to bugs in polyguide.

Every exception that describes bad input — a condition name or value, a guidance expression, a
checkpoint file, a command-line value, a plugin that is not installed — derives from
:class:`UserError`. The command line catches exactly this base class and prints one line,
``polyguide <command>: error: <message>``, with exit code 2; anything else is a bug and keeps its
traceback. Library callers can catch :class:`UserError` the same way.

The project's error types subclass it (``ConditionError``, ``PluginError``,
``GuidanceSyntaxError``, ``AffineError``, ``SpaceError``, ``CheckpointError``), and also keep
their historical built-in base (``ValueError``, ``LookupError``) so existing ``except ValueError``
code still works.
"""

from __future__ import annotations

__all__ = ["ArgumentError", "NonFiniteError", "OutputError", "UserError", "one_line"]


class UserError(Exception):
    """Bad input that the user can fix; the CLI reports it in one line with exit code 2."""


class ArgumentError(UserError, ValueError):
    """A command-line value out of range or inconsistent with the model (``--steps 0``, ``--prompt``
    for an image model, a condition given twice)."""


class OutputError(UserError, OSError):
    """An output path that cannot be written (a file where a folder is needed, no permission), or an
    existing file that would be overwritten without ``--force``."""


class CheckpointError(UserError, ValueError):
    """A checkpoint (or cached model file) that cannot be used; the message names the file and why."""


class NonFiniteError(UserError, FloatingPointError):
    """Sampling produced NaN or ±inf (e.g. a guidance weight so large that the prediction overflows);
    nothing is written."""


def one_line(error: BaseException, width: int = 60) -> str:
    """The message of ``error`` on one line.

    An error that points into a text (``text`` and ``col`` attributes, as a guidance syntax error
    has) shows the place with ``»`` instead of a caret line beneath it, the text cut to ``width``
    characters around it; other multi-line messages keep their lines, joined by `` | ``.
    """
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    source, col = getattr(error, "text", None), getattr(error, "col", None)
    if isinstance(source, str) and "\n" in text:
        text = text.split("\n", 1)[0]  # drop the caret lines; shown inline below
        if isinstance(col, int) and 0 <= col <= len(source):
            lo = max(0, col - width // 2)
            hi = min(len(source), lo + width)
            around = (("…" if lo else "") + source[lo:col] + "»" + source[col:hi]
                      + ("…" if hi < len(source) else ""))
            text += f" (column {col + 1}: {around})"
        else:
            text += f" (in: {source[:width]}{'…' if len(source) > width else ''})"
    parts = [p.strip() for p in text.splitlines() if p.strip()]
    return " | ".join(parts) or type(error).__name__
