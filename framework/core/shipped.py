"""Where the shipped recipes and checkpoints are, in a source checkout and after ``pip install``.

In the repository they live under ``recipes/<modality>/`` (``recipes/image/shapes_flow.yaml``,
``recipes/image/checkpoints/shapes_flow.ckpt``). The package ships that folder as the package
``polyguide_recipes`` (``setup.py`` maps it onto ``recipes/``), so an installed copy finds them
through :mod:`importlib.resources` wherever it is installed; an editable install maps the same
package onto the checkout. A path such as ``recipes/image/checkpoints/shapes_flow.ckpt``, which
the docs use, therefore works from a checkout and, through :func:`resolve`, from anywhere.
"""

from __future__ import annotations

import importlib.util
from importlib.resources import files
from pathlib import Path

__all__ = ["PACKAGE", "PREFIX", "recipes_dir", "resolve", "root"]

PACKAGE = "polyguide_recipes"
#: how docs and checkpoints name shipped files: ``recipes/<modality>/...``
PREFIX = "recipes"
_CHECKOUT = Path(__file__).resolve().parents[2] / PREFIX


def root() -> Path:
    """The folder holding ``<modality>/*.yaml`` and ``<modality>/checkpoints/``: the installed
    ``polyguide_recipes`` package, else (source tree that was never installed) the checkout's
    ``recipes/``."""
    if importlib.util.find_spec(PACKAGE) is not None:
        found = Path(str(files(PACKAGE)))
        if found.is_dir():
            return found
    return _CHECKOUT


def recipes_dir(modality: str) -> Path:
    """``root() / modality``: where a built-in modality's recipes and checkpoints are."""
    return root() / modality


def resolve(path: str | Path) -> Path:
    """A file a user or a checkpoint names: the path itself if it exists (relative to the working
    directory, or absolute); else, for a relative path ``recipes/<modality>/...`` (as the docs
    write shipped files), the shipped file of that name if there is one; else ``path`` unchanged,
    so the caller's "does not exist" error names what was given."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    parts = p.parts
    if len(parts) > 1 and parts[0] == PREFIX:
        shipped = root().joinpath(*parts[1:])
        if shipped.exists():
            return shipped
    return p
