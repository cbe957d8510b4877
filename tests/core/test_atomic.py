"""Atomic writes: a failed write leaves the old file whole and no temporary file behind."""

import pytest

from framework.core.atomic import atomic_write


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = atomic_write(tmp_path / "sub" / "a.txt", lambda tmp: tmp.write_text("old"))
    assert path.read_text() == "old" and oct(path.stat().st_mode)[-3:] == "644"

    def half(tmp):
        tmp.write_text("ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half)
    assert path.read_text() == "old" and [p.name for p in path.parent.iterdir()] == ["a.txt"]
    atomic_write(path, lambda tmp: tmp.write_text("new"))
    assert path.read_text() == "new"


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_next_write_removes_only_dead_writers_temporaries(tmp_path):
    import os

    from framework.core.atomic import _host, stale_temporaries

    dead = tmp_path / f".b.ckpt.{_host()}.{_dead_pid()}.x1y2.tmp"  # a writer killed mid-save
    alive = tmp_path / f".b.ckpt.{_host()}.{os.getppid()}.x1y2.tmp"  # a writer still running
    remote = tmp_path / f".b.ckpt.otherhost.{_dead_pid()}.x1y2.tmp"  # another machine's (shared disk)
    for p in (dead, alive, remote):
        p.write_text("partial")
    assert stale_temporaries(tmp_path) == [dead]
    atomic_write(tmp_path / "a.ckpt", lambda tmp: tmp.write_text("new"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.ckpt", alive.name, remote.name])


def test_the_temporary_is_beside_the_destination_and_synced_before_the_rename(tmp_path, monkeypatch):
    import os
    import tempfile

    from framework.core.atomic import atomic_save

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "elsewhere"))  # $TMPDIR is never used
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
                        or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", str(a))) or real_replace(a, b))
    path = atomic_save(tmp_path / "c.ckpt", lambda f: f.write(b"bytes"))
    assert path.read_bytes() == b"bytes"
    (kind, tmp), (kind2, moved), (kind3, folder) = events
    assert (kind, kind2, kind3) == ("fsync", "replace", "fsync")
    assert tmp == moved and os.path.dirname(tmp) == str(tmp_path)  # file synced, renamed, then its folder
    assert folder == str(tmp_path)
