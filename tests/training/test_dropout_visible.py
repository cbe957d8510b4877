"""The condition dropout a run trains is checked against every expression before the first step,
printed as a table at the start, and kept in ``hparams.yaml``, the checkpoint and ``polyguide explain``."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from framework.cli.main import main
from framework.guidance.syntax import parse
from framework.model.checkpoints import read_checkpoint
from framework.training.module import load

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "toy" / "points_flow.yaml")
#: cfg over both conditions trains {shape, color} and ∅ only
ONLY_CFG = ["--model.guidance", '["cfg((shape, color), 3)"]']


def _fit(tmp_path: Path, *extra: str) -> int:
    return main(["fit", "--config", RECIPE, "--trainer.max_steps", "1", "--trainer.val_check_interval", "1",
                 "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
                 "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(tmp_path),
                 "--trainer.logger", '{"class_path": "lightning.pytorch.loggers.CSVLogger", '
                                     f'"init_args": {{"save_dir": "{tmp_path}"}}}}',
                 "--data.init_args.n_train", "128", "--data.init_args.n_val", "64",
                 "--data.init_args.batch_size", "64", "--model.val_samples", "8", "--model.val_steps", "2",
                 *extra])


def test_untrained_val_guidance_stops_before_the_first_step(tmp_path, capsys):
    code = _fit(tmp_path, *ONLY_CFG, "--model.val_guidance", '{s3: "cfg(shape, 3)"}')
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert err[-1].startswith("polyguide fit: error: val_guidance s3: guidance ")
    assert "{shape} (dropping color)" in err[-1]
    assert not any("Traceback" in line for line in err)
    assert not list(tmp_path.rglob("*.ckpt"))  # nothing was trained


def test_dropout_is_printed_stored_and_explained(tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO)
    assert _fit(tmp_path, *ONLY_CFG, "--model.val_guidance", '{c3: "cfg((shape, color), 3)"}') == 0
    said = capsys.readouterr().out + "\n".join(r.getMessage() for r in caplog.records)
    assert "condition dropout trained, per sample:" in said
    assert "color, shape" in said  # the one event cfg over both conditions needs: drop both together
    (hparams,) = tmp_path.rglob("hparams.yaml")
    stored = yaml.safe_load(hparams.read_text())["dropout_trained"]
    assert stored == {"exclusive": {"color+shape": 0.3}, "independent": {}}
    (last,) = tmp_path.rglob("last.ckpt")
    assert read_checkpoint(last)["dropout"] == stored
    capsys.readouterr()
    assert main(["explain", "cfg(shape, 3)", "--checkpoint", str(last), "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert ["color,", "shape", "0.3", "exclusive", "event"] in [line.split() for line in out.splitlines()]
    assert "trained for it: NO" in out and "{shape} (dropping color)" in out


def test_extend_dropout_trains_what_val_guidance_needs(tmp_path):
    """``extend_dropout``: the same untrained expression extends the derived dropout instead."""
    assert _fit(tmp_path, *ONLY_CFG, "--model.val_guidance", '{s3: "cfg(shape, 3)"}',
                "--model.extend_dropout", "true") == 0
    (hparams,) = tmp_path.rglob("hparams.yaml")
    stored = yaml.safe_load(hparams.read_text())
    assert stored["guidance"] == ["cfg((shape, color), 3)", "cfg(shape, 3)"]  # what a reload derives from
    assert set(stored["dropout_trained"]["exclusive"]) == {"color+shape", "color"}  # cfg(shape) drops color
    (last,) = tmp_path.rglob("last.ckpt")
    model = load(last)
    assert model.dropout.record() == stored["dropout_trained"]
    assert not model.dropout.check(parse("cfg(shape, 3)"), model.specs)  # no untrained subset left
