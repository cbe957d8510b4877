"""``polyguide modalities`` (encoders, absolute recipe paths) and the training progress bar."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from torch.utils.data import DataLoader

from framework.cli.main import main
from framework.training.module import GenerativeModule


def test_modalities_lists_encoders_and_absolute_recipe_paths(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # printed paths must not depend on where the command runs
    assert main(["modalities"]) == 0
    out = capsys.readouterr().out
    assert "encoder   audio/melody" in out and "encoder   motion/trajectory" in out
    assert "chromagrams [n, CHROMA_FRAMES, 12]" in out  # the encoder's own one-line summary
    recipes = [Path(line.split(None, 1)[1]) for line in out.splitlines() if line.startswith("  recipe ")]
    assert len(recipes) >= 4
    assert all(p.is_absolute() and p.is_file() and p.suffix == ".yaml" for p in recipes), recipes


def _fit_one_step(bar) -> L.Trainer:
    model = GenerativeModule(family="flow", shape=[4, 2], backbone={"dim": 16, "depth": 1, "heads": 2})
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_model_summary=False, limit_val_batches=0, callbacks=[bar])
    trainer.fit(model, train_dataloaders=DataLoader([{"x": torch.randn(2, 4, 2)}], batch_size=None))
    return trainer


def test_any_trainer_of_a_generative_module_shows_epoch_without_minus_two(capsys):
    """Lightning's rich bar says "Epoch 0/-2" when only max_steps bounds the run (max_epochs −1);
    a GenerativeModule gives whatever trainer fits it polyguide's bars."""
    trainer = _fit_one_step(RichProgressBar())
    assert trainer.max_epochs == -1
    bar = trainer.progress_bar_callback
    assert bar._get_train_description(4).strip() == "Epoch 4"
    assert type(_fit_one_step(TQDMProgressBar()).progress_bar_callback).__name__ == "TQDMProgress"
