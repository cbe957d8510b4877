"""Atomic writes: a failed write leaves the old file whole and no temporary file behind."""

import pytest

from framework.atomic import atomic_write


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
