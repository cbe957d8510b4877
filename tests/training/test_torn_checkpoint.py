"""A training run killed with SIGKILL in the middle of writing a checkpoint, with ``$TMPDIR`` on another
filesystem (tmpfs), leaves ``last.ckpt`` whole (the old or the new checkpoint, never behind the newest step
checkpoint), nothing in ``$TMPDIR``, and only temporary files that the next save removes."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from framework.cli.fit import fit_main
from framework.core.atomic import stale_temporaries
from framework.model.checkpoints import read_checkpoint

HELPER = Path(__file__).with_name("kill_during_save.py")
ROOT = Path(__file__).resolve().parents[2]


def _other_filesystem_tmpdir(tmp_path: Path) -> Path:
    """A fresh folder on another filesystem than ``tmp_path`` (tmpfs /dev/shm where there is one)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and os.stat(shm).st_dev != os.stat(tmp_path).st_dev:
        d = shm / f"polyguide-test-{os.getpid()}-{tmp_path.name}"
        d.mkdir()
        return d
    d = tmp_path / "tmpdir"  # no second filesystem here: the kill itself is still tested
    d.mkdir()
    return d


def _step(path: Path) -> int:
    return int(read_checkpoint(path)["global_step"])


@pytest.mark.fault("torn checkpoint")
@pytest.mark.parametrize("at", [3, 4], ids=["kill-in-save-3", "kill-in-save-4"])
def test_kill_during_checkpoint_save_leaves_a_whole_last_checkpoint(tmp_path, at):
    tmpdir = _other_filesystem_tmpdir(tmp_path)
    env = {**os.environ, "TMPDIR": str(tmpdir), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(HELPER), str(tmp_path), str(at)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "HOOKED").exists():
            assert proc.poll() is None, f"ended before save {at}: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "the run never reached the save"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # mid-write: its first bytes are on disk, the rest never come
        assert proc.wait(60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
        leftovers_in_tmpdir = sorted(p.name for p in tmpdir.iterdir())
        if tmpdir != tmp_path / "tmpdir":
            for p in tmpdir.iterdir():
                p.unlink()
            tmpdir.rmdir()
    assert leftovers_in_tmpdir == []  # nothing was staged on the other filesystem

    ckpts = tmp_path / "ckpts"
    steps = {p.name: _step(p) for p in ckpts.glob("*.ckpt")}  # every checkpoint there is whole and loads
    newest_step_file = max(v for k, v in steps.items() if re.search(r"step=\d+", k))
    assert steps["last.ckpt"] in (1, 2) and steps["last.ckpt"] >= newest_step_file, steps
    temporaries = sorted(p for p in ckpts.iterdir() if p.suffix != ".ckpt")
    assert temporaries and temporaries == sorted(stale_temporaries(ckpts))  # writer is dead

    # the documented resume command continues from last.ckpt, and its first save cleans up
    fit_main(["fit", "--config", str(ROOT / "recipes/toy/points_flow.yaml"),
              "--config", str(tmp_path / "every_step.yaml"), "--ckpt_path", str(ckpts / "last.ckpt"),
              "--trainer.max_steps", str(steps["last.ckpt"] + 1), "--trainer.limit_val_batches", "0",
              "--trainer.logger", "false", "--trainer.num_sanity_val_steps", "0",
              "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path),
              "--data.init_args.n_train", "256", "--data.init_args.n_val", "64",
              "--data.init_args.batch_size", "64"])
    assert _step(ckpts / "last.ckpt") == steps["last.ckpt"] + 1
    assert sorted(p.name for p in ckpts.iterdir() if p.suffix != ".ckpt") == []
