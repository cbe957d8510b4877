"""``polyguide new-modality NAME``: write a working modality plugin to start from.

The template (``template/``) is a complete plugin, ``spectra``: 1-D signals with a categorical
condition, a patch codec, a :class:`~framework.training.data.SplitData` data module, an FFT judge, a
recipe, ``pyproject.toml`` and its tests (the :mod:`framework.testing` contract suite and fit →
sample → eval). :func:`new_modality` copies it with ``spectra`` renamed, so the result installs
(``pip install -e``), trains, samples and evaluates as it is; ``docs/plugins.md`` walks through
the same files.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from framework.core.atomic import atomic_write
from framework.core.errors import UserError

__all__ = ["TEMPLATE", "ScaffoldError", "new_modality", "template_files"]

TEMPLATE = Path(__file__).resolve().parent / "template"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # also a valid encoder prefix (framework.core.encoders)


class ScaffoldError(UserError, ValueError):
    """A modality name or output folder that cannot be used."""


def template_files() -> list[Path]:
    """The template's files, relative to :data:`TEMPLATE`, sorted."""
    return sorted(p.relative_to(TEMPLATE) for p in TEMPLATE.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc"))


def class_name(name: str) -> str:
    """``"my_signals"`` → ``"MySignals"`` (the prefix of the plugin's classes)."""
    return "".join(part.capitalize() for part in name.split("_"))


def check_name(name: str) -> str:
    """A new modality's name: lower case letters, digits and ``_``, starting with a letter."""
    if not isinstance(name, str) or not _NAME.match(name) or keyword.iskeyword(name):
        raise ScaffoldError(f"modality name {name!r} must be lower-case letters, digits and '_', starting "
                            f"with a letter (it names the entry point, the package polyguide_<name> and "
                            f"encoders '<name>/...')")
    return name


def new_modality(name: str, out: str | Path = ".") -> Path:
    """Write the plugin project ``out/polyguide_<name>/`` and return its folder.

    Raises:
        ScaffoldError: a bad name, or a folder that already exists (nothing is overwritten).
    """
    check_name(name)
    dest = Path(out).expanduser().resolve() / f"polyguide_{name}"
    if dest.exists():
        raise ScaffoldError(f"{dest} already exists; choose another --out or remove it")
    swaps = (("spectra", name), ("Spectra", class_name(name)))
    for rel in template_files():
        text = (TEMPLATE / rel).read_text(encoding="utf-8")
        target = str(rel)
        for old, new in swaps:
            text, target = text.replace(old, new), target.replace(old, new)
        atomic_write(dest / target, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
    return dest
