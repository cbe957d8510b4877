"""Input files checked before they are opened or read: one line for each way a file can be wrong.

:func:`regular_file` refuses, from ``stat`` alone (nothing is opened, so a FIFO or a device never
blocks), a name longer than the system allows, a missing file, a dangling link, a folder, a FIFO,
socket or device, an empty file, and one that cannot be read. :func:`load_npy` reads a ``.npy``
array only after its header (numpy's ``read_magic`` / ``read_array_header``) says it is a plain
numeric array of at most ``max_elements`` values whose data the file really holds, so a header
declaring shape ``(10¹², 2)`` costs nothing; pickles, ``.npz`` archives renamed ``.npy``,
structured, complex, datetime, string and object arrays are refused with one line naming the
file. Both raise the ``error`` class their caller names (a :class:`~framework.core.errors.UserError`),
e.g. ``ConditionError`` for a condition's file.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import numpy as np

from framework.core.errors import UserError

__all__ = ["NUMERIC_KINDS", "load_npy", "regular_file"]

#: numpy dtype kinds of plain numbers: bool, signed and unsigned integers, floats
NUMERIC_KINDS = "biuf"
_KIND_NAMES = {"c": "complex numbers", "M": "dates/times", "m": "time spans",
               "V": "records (a structured dtype)", "O": "Python objects", "U": "text", "S": "bytes"}


def _short(path: Path, width: int = 240) -> str:
    text = str(path)
    return text if len(text) <= width else f"{text[:40]}…{text[-30:]} ({len(text)} characters)"


def regular_file(path: str | Path, what: str, error: type[UserError] = UserError,
                 empty_ok: bool = False) -> Path:
    """``path`` as a :class:`~pathlib.Path` if it is a readable (and, unless ``empty_ok``, non-empty)
    regular file, links followed; otherwise ``error`` naming ``what`` and the fault. Nothing is
    opened, so a FIFO never blocks."""
    path = Path(path).expanduser()
    try:
        st = path.stat()
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise error(f"{what} {_short(path)}: the name is longer than this system allows") from None
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            if path.is_symlink():
                raise error(f"{what} {_short(path)} is a link to {os.readlink(path)}, which does not exist") \
                    from None
            raise error(f"{what} {_short(path)} does not exist") from None
        raise error(f"{what} {_short(path)} cannot be read: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{what} {_short(path)} is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else
                "a socket" if stat.S_ISSOCK(st.st_mode) else "a device")
        raise error(f"{what} {_short(path)} is {kind}, not a regular file")
    if st.st_size == 0 and not empty_ok:
        raise error(f"{what} {_short(path)} is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise error(f"{what} {_short(path)} cannot be read: permission denied")
    return path


def load_npy(path: str | Path, what: str, max_elements: int,
             error: type[UserError] = UserError) -> np.ndarray:
    """A plain numeric ``.npy`` array of at most ``max_elements`` values, checked from its header
    before any data is read (see the module docstring); ``error`` names ``what`` and the file."""
    path = regular_file(path, what, error)
    where = f"{what} {_short(path)}"
    try:
        with open(path, "rb") as f:
            head = f.read(6)
            if head.startswith(b"PK\x03\x04"):
                raise error(f"{where}: is a .npz archive (a zip), not a .npy array; save it with numpy.save")
            f.seek(0)
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            except (ValueError, SyntaxError, TypeError) as e:
                raise error(f"{where}: is not a .npy array ({' '.join(str(e).split())[:120]})") from None
            if dtype.hasobject or dtype.kind not in NUMERIC_KINDS or dtype.fields is not None:
                kind = _KIND_NAMES.get(dtype.kind, f"dtype {dtype}")
                raise error(f"{where}: holds {kind}, not plain numbers (dtype {dtype.str})")
            count = int(np.prod(shape, dtype=object))
            if count > max_elements:
                raise error(f"{where}: declares shape {list(shape)} ({count:,} values); at most "
                            f"{max_elements:,} are accepted")
            if count == 0:
                raise error(f"{where}: is an empty array (shape {list(shape)})")
            if os.fstat(f.fileno()).st_size - f.tell() < count * dtype.itemsize:
                raise error(f"{where}: is truncated (its header declares shape {list(shape)}, "
                            f"{count * dtype.itemsize:,} bytes of data, which the file does not hold)")
            data = np.fromfile(f, dtype=dtype, count=count)
    except OSError as e:
        raise error(f"{where} cannot be read: {e.strerror or e}") from None
    return data.reshape(shape, order="F" if fortran else "C")
