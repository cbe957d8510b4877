"""Command-line values checked before any work starts: bounded numbers, files, output folders.

Each check raises a :class:`~framework.core.errors.UserError` (or, inside argparse, an
``argparse.ArgumentTypeError`` that the parser turns into one), so the CLI reports a mistake in one
line with exit code 2 before it loads a model or samples anything.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from framework.core import shipped
from framework.core.errors import ArgumentError, OutputError

__all__ = [
    "MAX_N", "MAX_SEED", "MAX_STEPS", "MAX_TOKENS", "Parser", "bounded_int", "check_cond_syntax",
    "check_input_file", "check_output_dir", "check_output_file", "fresh_seed", "parse_guidance",
    "protect_dash_values", "resolve_device",
]

#: Upper bounds of sizes (a typo such as ``--steps 3000000`` would otherwise run for days).
MAX_STEPS = 10_000
MAX_N = 100_000
MAX_TOKENS = 100_000
MAX_SEED = 2**63 - 1  # torch generators take a signed 64-bit seed


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors raise :class:`~framework.core.errors.ArgumentError`
    (``polyguide sample: error: ...`` in one line from ``main``) instead of printing the usage
    and exiting; ``--help`` still prints and exits 0."""

    def error(self, message: str) -> NoReturn:
        raise ArgumentError(f"{message} (see {self.prog} --help)")


def bounded_int(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``lo..hi`` (inclusive), with a message naming the bound."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip().replace("_", ""), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi:,}" if hi is not None else f"at least {lo}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value:,}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


def non_empty(text: str) -> str:
    """An argparse ``type``: a string that is not blank."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


non_empty.__name__ = "text"


def resolve_device(name: str | None):
    """``--device`` → a ``torch.device`` (``None``: the CPU), refusing one this machine lacks."""
    import torch

    if name is None:
        return torch.device("cpu")
    try:
        device = torch.device(name.strip())
    except (RuntimeError, ValueError):
        raise ArgumentError(f"--device {name!r} is not a device name (e.g. cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ArgumentError(f"--device {name}: no CUDA GPU is available here "
                                f"(torch.cuda.is_available() is False); use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ArgumentError(f"--device {name}: this machine has {count} CUDA device(s), "
                                f"cuda:0 … cuda:{count - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ArgumentError(f"--device {name}: Apple's MPS is not available here; use --device cpu")
    elif device.type != "cpu":
        raise ArgumentError(f"--device {name}: polyguide samples on cpu, cuda[:N] or mps")
    return device


def fresh_seed() -> int:
    """A random seed for a run that was given none (printed by the CLI, so it can be repeated)."""
    import secrets

    return secrets.randbelow(2**31)


def check_input_file(path: Path, what: str) -> Path:
    """``path`` must be an existing, readable regular file; ``what`` names it in the error.

    A shipped file named as the docs do (``recipes/image/checkpoints/shapes_flow.ckpt``) is found
    from any directory, in the checkout or the installed package (:func:`framework.core.shipped.resolve`).
    """
    from framework.core.files import regular_file

    try:
        path = shipped.resolve(path)
    except OSError:  # e.g. a name longer than the system allows: regular_file says so
        pass
    return regular_file(path, what, ArgumentError, empty_ok=True)  # stat only: a FIFO never blocks


def _writable_dir(folder: Path, what: str, path: Path) -> None:
    """Probe that files can be created in the existing folder ``folder`` (root ignores mode bits,
    and read-only file systems only show on writing, so try it)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise OutputError(f"{what} {path} cannot be written: {folder} is not writable "
                          f"({e.strerror or e})") from None


def _existing_ancestor(path: Path, what: str) -> Path:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{what} {path} cannot be created: {parent} is a file, not a folder")
            return parent
    return Path.cwd()


def _check_folder(folder: Path, what: str, path: Path) -> None:
    """Files can be created in ``folder`` (existing or to be created) for the output ``path``."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{what} {path} is a file, not a folder" if folder == path else
                          f"{what} {path} cannot be created: {folder} is a file, not a folder")
    _writable_dir(folder if folder.exists() else _existing_ancestor(folder, what), what, path)


def check_output_dir(path: Path, what: str = "output folder") -> Path:
    """``path`` must be a writable folder or creatable as one; nothing is created."""
    path = path.expanduser()
    try:
        dangling = path.is_symlink() and not path.exists()
    except OSError as e:  # e.g. a name longer than the system allows
        raise OutputError(f"{what} {str(path)[:60]}… cannot be created: {e.strerror or e}") from None
    if dangling:
        raise OutputError(f"{what} {path} is a link to {os.readlink(path)}, which does not exist")
    _check_folder(path, what, path)
    return path


def check_output_file(path: Path, what: str = "output file") -> Path:
    """``path`` must be a file that can be written (its folder writable or creatable)."""
    path = path.expanduser()
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder; give a file name, e.g. {path / 'model.ckpt'}")
    _check_folder(path.parent, what, path)
    return path


# a token that can only be a value: a negative number or an expression (options never hold these)
_VALUE_LIKE = re.compile(r"^-(\d|\.\d|.*[()*+/ ,=\[\]])")


def protect_dash_values(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """Let values that start with ``-`` through argparse, e.g. ``--guidance "-1*uncond + ..."``.

    argparse reads any ``-``-prefixed token as an option. A token that cannot be an option (it
    holds ``(``, ``*``, a space...) is joined to the option before it (``--guidance=<value>``), or,
    for a positional argument such as ``explain``'s guidance, moved after ``--``.
    """
    argv = list(argv)
    if not argv:
        return argv
    sub = _subparser(parser, argv[0])
    if sub is None:
        return argv
    takes_value = {s for a in sub._actions for s in a.option_strings if a.nargs is None
                   and not isinstance(a, (argparse._StoreTrueAction, argparse._HelpAction))}
    out, moved, i = [argv[0]], [], 1
    while i < len(argv):
        tok = argv[i]
        if tok == "--":  # everything after it is positional already
            return [*out, "--", *moved, *argv[i + 1:]]
        if tok in takes_value and i + 1 < len(argv) and _VALUE_LIKE.match(argv[i + 1]):
            out.append(f"{tok}={argv[i + 1]}")
            i += 2
            continue
        if _VALUE_LIKE.match(tok) and tok.split("=", 1)[0] not in takes_value:
            moved.append(tok)  # a positional value
        else:
            out.append(tok)
        i += 1
    return out + (["--", *moved] if moved else [])


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(name)
    return None


def check_cond_syntax(pairs: list[str]) -> None:
    """``--cond`` values are ``name=value`` and name each condition once (checked before loading)."""
    from framework.core.conditions import ConditionError

    seen: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConditionError(f"--cond takes name=value, got {pair!r}")
        if any(not c.isprintable() for c in pair):
            raise ConditionError(f"--cond {name}: the value holds a line break or another control character "
                                 f"({pair!r}); give it on one line")
        if name in seen:
            raise ConditionError(f"condition {name!r} is given twice (--cond {seen[name]} and "
                                 f"--cond {pair}); give each condition once")
        seen[name] = pair


def parse_guidance(text: str | None):
    """Parse (and check) guidance text before any model is loaded: syntax errors come first.

    Returns the :class:`~framework.guidance.expr.Expr` (``None`` for ``None``), which sampling
    then takes as it is: the text is parsed once per command."""
    if text is None:
        return None
    from framework.guidance import parse
    from framework.guidance.expr import check_zero_directions

    expr = parse(text)
    expr.check()
    check_zero_directions(expr)
    return expr
