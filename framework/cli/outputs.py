"""A run owns its output folder, and a manifest marks a complete run.

``polyguide sample --out DIR`` writes into ``DIR`` only if ``DIR`` is new or empty, and claims it
by creating ``DIR/manifest.json`` exclusively (``O_CREAT | O_EXCL``: of two runs started together
exactly one wins). A folder that already holds files (an earlier run's, another running one's, or
the user's own) is left alone: the run writes into a fresh sub-folder ``DIR/run-<time>-<pid>``
instead and says so. Every file is written atomically, and the manifest is rewritten (atomically)
with ``"complete": true`` and the list of files as the last step, so a folder whose manifest says
``"complete": false`` holds an interrupted run (with whole files only).
"""

from __future__ import annotations

import datetime
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from framework.core.atomic import atomic_write
from framework.core.errors import OutputError

__all__ = ["MANIFEST", "claim", "complete"]

MANIFEST = "manifest.json"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _create_manifest(folder: Path) -> bool:
    """Create ``folder/manifest.json`` (in progress) exclusively; ``False`` if it exists already."""
    try:
        fd = os.open(folder / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump({"complete": False, "pid": os.getpid(), "started": _now()}, f)
    return True


def claim(out: Path) -> tuple[Path, str | None]:
    """The folder this run writes into, and a note to print when it is not ``out`` itself.

    Raises:
        OutputError: ``out`` cannot be created or written.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not any(out.iterdir()) and _create_manifest(out):
            return out, None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for k in range(1000):
            sub = out / f"run-{stamp}-{os.getpid()}{f'-{k}' if k else ''}"
            try:
                sub.mkdir()
            except FileExistsError:
                continue
            _create_manifest(sub)
            return sub, (f"note: {out} already holds files of another run (or yours), so this run writes "
                         f"to its own folder {sub}")
    except OSError as e:
        raise OutputError(f"output folder {out} cannot be written: {e.strerror or e}") from None
    raise OutputError(f"output folder {out}: no fresh sub-folder could be created")


def complete(folder: Path, files: Sequence[Path], **info: Any) -> Path:
    """Rewrite ``folder/manifest.json`` (atomically) as a complete run: ``files`` (names relative to
    ``folder``, with their sizes) and ``info`` (the command's settings)."""
    listing = [{"file": str(Path(f).relative_to(folder)), "bytes": Path(f).stat().st_size} for f in files]
    record: Mapping[str, Any] = {"complete": True, "finished": _now(), **info, "files": listing}
    text = json.dumps(record, indent=2, default=str)
    return atomic_write(folder / MANIFEST, lambda tmp: tmp.write_text(text, encoding="utf-8"))
