"""Validation scores the weights that are saved: with the recipe's EMA callback, every logged guided
metric is the score of a fresh sample from ``last.ckpt`` (the EMA weights) on the same requests."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from framework.cli.fit import fit_main
from framework.toy.data import MixtureData
from framework.training.module import load

ROOT = Path(__file__).resolve().parents[2]
N, STEPS = 64, 4


def test_logged_guided_metrics_are_those_of_the_saved_weights(tmp_path):
    fit_main(["fit", "--config", str(ROOT / "recipes" / "toy" / "points_flow.yaml"),
              "--trainer.max_steps", "6", "--trainer.val_check_interval", "6",
              "--trainer.limit_val_batches", "1",
              "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
              "--trainer.default_root_dir", str(tmp_path), "--trainer.logger",
              '{"class_path": "lightning.pytorch.loggers.CSVLogger", '
              f'"init_args": {{"save_dir": "{tmp_path}"}}}}',
              "--data.init_args.n_train", "512", "--data.init_args.n_val", "64",
              "--data.init_args.batch_size", "64", "--model.val_samples", str(N),
              "--model.val_steps", str(STEPS), "--model.lr", "0.01", "--model.warmup_steps", "1"])
    (metrics,) = tmp_path.rglob("metrics.csv")
    with metrics.open() as f:
        (logged,) = [r for r in csv.DictReader(f) if r.get("val/cfg3/acc_both")]
    (last,) = tmp_path.rglob("last.ckpt")
    model = load(str(last))
    data = MixtureData(kind="points", n_train=512, n_val=64, batch_size=64, length=12)
    conds = data.val_conditions(N)
    compared = 0
    for label, guidance in model.hparams.val_guidance.items():
        out = model.sample(conds, guidance, steps=STEPS, seed=0)
        for metric, value in data.score(out.samples, conds).items():
            logged_value = float(logged[f"val/{label}/{metric}"])
            assert logged_value == pytest.approx(float(value), abs=1e-6), (label, metric)
            compared += 1
    assert compared == 6
