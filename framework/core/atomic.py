"""Atomic, durable file writes: a reader (or a crash, or ``kill -9``) never sees half a file.

Every write goes to a temporary file *in the destination's own directory* (never ``$TMPDIR``: a
rename across filesystems is not atomic, it degrades to truncate-and-copy), which is flushed and
fsynced, then renamed over the destination, and the directory is fsynced so the rename survives a
power cut. A failed write removes its temporary file. A killed writer cannot clean up after
itself, so its temporary file carries the host and process id, and the next write into the same
directory removes the leftovers of writers that are no longer running.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_save", "atomic_write", "stale_temporaries"]

_SUFFIX = ".tmp"
# .<destination name>.<host>.<pid>.<random>.tmp (mkstemp's random part has no dots)
_TEMPORARY = re.compile(r"^\..+\.(?P<host>[^.]+)\.(?P<pid>\d+)\.[^.]+\.tmp$")


def _host() -> str:
    return socket.gethostname().replace(".", "-") or "host"


def _prefix(path: Path) -> str:
    return f".{path.name}."


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else (or cannot tell): leave its file alone
    return True


def stale_temporaries(directory: str | Path) -> list[Path]:
    """Temporary files in ``directory`` left by writers on this host that are no longer running."""
    directory, host, stale = Path(directory).expanduser(), _host(), []
    if not directory.is_dir():
        return stale
    for f in directory.iterdir():
        m = _TEMPORARY.match(f.name)
        if m and m["host"] == host and int(m["pid"]) != os.getpid() and not _alive(int(m["pid"])):
            stale.append(f)
    return stale


def _temporary(path: Path) -> tuple[int, Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in stale_temporaries(path.parent):
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_prefix(path)}{_host()}.{os.getpid()}.",
                               suffix=_SUFFIX)
    return fd, Path(tmp)


def _commit(tmp: Path, path: Path) -> None:
    os.chmod(tmp, 0o644)  # mkstemp creates it private
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it onto ``path``.

    ``path`` holds either its old content or the whole new one, whatever happens: the new bytes are
    fsynced before the rename, the directory after it. The temporary file is removed if ``write``
    fails. Returns ``path``.
    """
    path = Path(path).expanduser()
    fd, tmp = _temporary(path)
    os.close(fd)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)  # fsync flushes the file's data whichever descriptor asks
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _commit(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_save(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Like :func:`atomic_write`, but ``write(f)`` writes into an open binary file (e.g.
    ``lambda f: torch.save(obj, f)``), which is flushed and fsynced through the same descriptor."""
    path = Path(path).expanduser()
    fd, tmp = _temporary(path)
    try:
        with open(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _commit(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
