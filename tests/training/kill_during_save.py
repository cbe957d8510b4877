"""Helper process for test_torn_checkpoint.py (not a test): ``python kill_during_save.py ROOT AT``.

Trains the toy flow recipe through ``polyguide fit`` for 3 steps with a checkpoint (and ``last``)
at every step into ROOT/ckpts, and freezes inside checkpoint save number AT (counting
``Trainer.save_checkpoint`` calls) right after its first bytes reach a file, wherever that file
is: it writes ROOT/HOOKED and sleeps until the test kills it with SIGKILL. Nothing here knows how
polyguide saves; it only watches Python-level file writes.
"""

import builtins
import io
import os
import sys
import time
from pathlib import Path

import lightning as L

from framework.cli.fit import fit_main

ROOT, AT = (Path(sys.argv[1]), int(sys.argv[2])) if __name__ == "__main__" else (Path(), 0)
RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "toy" / "points_flow.yaml"
state = {"saves": 0, "armed": False}


def freeze() -> None:
    state["armed"] = False  # the marker file itself must be written normally
    (ROOT / "HOOKED").write_text(str(os.getpid()))
    time.sleep(120)
    os._exit(3)  # only if nobody killed us


class Freezing:
    """A writable file that freezes the process after its first non-empty write while armed."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        n = self._f.write(data)
        if state["armed"] and len(data):
            self._f.flush()
            freeze()
        return n

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)


def install_hooks() -> None:
    """Count checkpoint saves, and hand out freezing files while save number AT runs."""
    real_open, real_save = builtins.open, L.Trainer.save_checkpoint

    def opener(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return Freezing(f) if state["armed"] and any(c in mode for c in "wax+") else f

    def save_checkpoint(self, filepath, *args, **kwargs):
        state["saves"] += 1
        state["armed"] = state["saves"] == AT
        try:
            return real_save(self, filepath, *args, **kwargs)
        finally:
            state["armed"] = False

    builtins.open = io.open = opener
    L.Trainer.save_checkpoint = save_checkpoint


if __name__ == "__main__":
    install_hooks()
    (ROOT / "every_step.yaml").write_text(f"""
trainer:
  callbacks:
    - class_path: lightning.pytorch.callbacks.EMAWeightAveraging
      init_args: {{decay: 0.99}}
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{dirpath: {ROOT / "ckpts"}, every_n_train_steps: 1, save_top_k: -1, save_last: true}}
""")
    fit_main(["fit", "--config", str(RECIPE), "--config", str(ROOT / "every_step.yaml"),
              "--trainer.max_steps", "3", "--trainer.limit_val_batches", "0", "--trainer.logger", "false",
              "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
              "--trainer.default_root_dir", str(ROOT), "--data.init_args.n_train", "256",
              "--data.init_args.n_val", "64", "--data.init_args.batch_size", "64"])
    (ROOT / "FINISHED").write_text("")
