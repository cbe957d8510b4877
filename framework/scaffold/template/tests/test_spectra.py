"""The plugin's own tests: the polyguide plugin contract, and fit → sample → eval end to end.

Run them where the plugin is installed (``pip install -e .``): ``python -m pytest tests``.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from framework.core import plugins
from framework.testing import ModalityContract, PluginCase

NAME = "spectra"
TINY = "{dim: 32, depth: 1, heads: 2}"
SMALL = {"n_train": 64, "n_val": 16, "batch_size": 16}


def recipe():
    """The shipped recipe, found through the installed plugin."""
    return plugins.get(NAME).recipes()[0]


class TestSpectraContract(ModalityContract):
    """Every check of ``framework.testing`` (registry, batch, codec, encoders, one training step and
    sampling, the writer, the judge, sampling without Lightning) on a small copy of the recipe."""

    case = PluginCase.from_recipe(recipe(), data_args=SMALL, roundtrip_atol=1e-5)


def test_fit_sample_eval(tmp_path, monkeypatch):
    """The recipe trains a few steps, and its checkpoint samples and evaluates from the command line."""
    from framework.cli.main import main

    monkeypatch.setattr(sys, "argv", ["polyguide"])  # LightningCLI reads sys.argv for its warnings
    assert main(["fit", "--config", str(recipe()), "--model.backbone", TINY, "--trainer.max_steps", "4",
                 "--trainer.limit_val_batches", "1", "--trainer.val_check_interval", "4",
                 "--model.val_samples", "8", "--model.val_steps", "2",
                 "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
                 "--trainer.default_root_dir", str(tmp_path / "fit"),
                 *[f"--data.init_args.{k}={v}" for k, v in SMALL.items()]]) in (0, None)
    (ckpt,) = (tmp_path / "fit").rglob("last.ckpt")
    out = tmp_path / "samples"
    assert main(["sample", "--checkpoint", str(ckpt), "--cond", "peak=4", "--cond", "level=1.2", "--n", "4",
                 "--steps", "2",
                 "--seed", "0", "--out", str(out), "--no-progress"]) == 0
    assert np.load(out / "spectra.npy").shape == (4, 1, 32)
    assert main(["eval", "--checkpoint", str(ckpt), "--n", "8", "--steps", "2", "--no-progress",
                 "--out", str(tmp_path / "eval")]) == 0
    (row,) = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert 0.0 <= row["acc_peak"] <= 1.0 and row["level_err"] >= 0.0  # eval scored both conditions


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
