"""Which classes a recipe or checkpoint may name: an allow-list, so that untrusted files run no code.

``polyguide fit`` builds its objects with jsonargparse, which imports and instantiates any
``class_path`` it meets, even inside a ``dict[str, Any]`` such as ``model.init_args.family_args``,
and Lightning merges a ``--ckpt_path`` checkpoint's hyper-parameters into that configuration. A
recipe or checkpoint someone sent you could therefore name ``subprocess.Popen``. Only import paths
under these entries may be named (an entry allows itself and everything under it):

* the framework (``framework``) and every installed modality plugin (the module of each
  ``polyguide.modalities`` entry point, e.g. ``modalities.image``);
* torch's optimisers and learning-rate schedulers (``torch.optim``);
* Lightning's callbacks, loggers, strategies, precision/IO plugins, profilers and accelerators;
* whatever ``POLYGUIDE_ALLOW_CLASSES`` adds: a comma-separated list of import paths, e.g.
  ``POLYGUIDE_ALLOW_CLASSES=mylab.callbacks,mylab.data.MyData polyguide fit --config my.yaml``.

:func:`enforced` makes jsonargparse enforce it (``set_parsing_settings``' import path policy: every
other path is refused *before* its module is imported), and :func:`check_class_paths` refuses a
checkpoint's hyper-parameters that name anything else (``sample``, ``eval``, ``export`` and
``fit --ckpt_path`` all read checkpoints through :func:`~framework.model.checkpoints.load_checkpoint`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from framework.core.errors import UserError

__all__ = ["BUILTIN", "ENV", "ClassNotAllowed", "allowed_entries", "check_class_paths", "enforced",
           "is_allowed"]

#: the environment variable that extends the allow-list
ENV = "POLYGUIDE_ALLOW_CLASSES"
#: always allowed (each entry covers the import paths under it)
BUILTIN = (
    "framework",
    "torch.optim",
    "lightning.pytorch.callbacks",
    "lightning.pytorch.loggers",
    "lightning.pytorch.strategies",
    "lightning.pytorch.plugins",
    "lightning.pytorch.profilers",
    "lightning.pytorch.accelerators",
    "lightning.fabric.plugins",
    "lightning.fabric.strategies",
    "lightning.fabric.accelerators",
    "lightning.pytorch.core",  # LightningModule / LightningDataModule, the CLI's base classes
    "lightning.pytorch.LightningModule",
    "lightning.pytorch.LightningDataModule",
)


class ClassNotAllowed(UserError, ValueError):
    """A recipe or checkpoint names a class (an import path) outside the allow-list."""


def _valid(entry: str) -> bool:
    return bool(entry) and all(part.isidentifier() for part in entry.split("."))


def allowed_entries() -> list[str]:
    """The allow-list now: :data:`BUILTIN`, the installed plugins' modules and :data:`ENV`'s entries.

    Raises:
        ClassNotAllowed: :data:`ENV` holds something that is not a dotted import path.
    """
    from framework.core.plugins import plugin_modules  # the registry, read once per process

    entries = list(BUILTIN)
    for module in plugin_modules():
        if _valid(module):
            entries.append(module)
    for raw in os.environ.get(ENV, "").split(","):
        entry = raw.strip()
        if not entry:
            continue
        if not _valid(entry) or entry == "jsonargparse" or entry.startswith("jsonargparse."):
            raise ClassNotAllowed(f"{ENV} holds {entry!r}, which is not a dotted import path that can be "
                                  f"allowed (e.g. mylab.callbacks)")
        entries.append(entry)
    return entries


def is_allowed(path: str, entries: list[str] | None = None) -> bool:
    """Whether the import path ``path`` (``"torch.optim.AdamW"``) is under an allowed entry."""
    entries = allowed_entries() if entries is None else entries
    return any(path == e or path.startswith(e + ".") for e in entries)


def _refusal(path: str, where: str) -> ClassNotAllowed:
    return ClassNotAllowed(f"{where} names the class {path!r}, which is not on polyguide's allow-list (the "
                           f"framework's, installed plugins', torch.optim's and Lightning's callbacks, "
                           f"loggers, strategies and plugins); a file someone sent you must not run code. "
                           f"If you trust it, add it with {ENV}={path}")


def check_class_paths(value: Any, where: str, entries: list[str] | None = None) -> None:
    """Refuse a ``class_path`` anywhere inside ``value`` (nested dicts and lists) that is not allowed.

    Raises:
        ClassNotAllowed: one line naming ``where`` and the class.
    """
    entries = allowed_entries() if entries is None else entries
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, Mapping):
            for key in ("class_path", "_class_path"):  # Lightning stores a subclass's as _class_path
                path = v.get(key)
                if path is not None and not (isinstance(path, str) and is_allowed(path, entries)):
                    raise _refusal(str(path)[:120], where)
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)


@contextlib.contextmanager
def enforced() -> Iterator[None]:
    """Within this block, jsonargparse refuses every import path a value names outside
    :func:`allowed_entries`, before importing it (``set_parsing_settings(import_path_denylist=["*"],
    import_path_allowlist=...)``); its previous policy is restored afterwards."""
    from jsonargparse import _common, set_parsing_settings

    keys = ("import_path_verdicts", "import_paths_enforced")
    saved = {k: _common.parsing_settings[k] for k in keys}
    set_parsing_settings(import_path_denylist=["*"], import_path_allowlist=allowed_entries())
    try:
        yield
    finally:
        _common.parsing_settings.update(saved)
