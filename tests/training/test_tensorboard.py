"""``--trainer.logger TensorBoardLogger`` works (the ``tensorboard`` extra) and validation shows
its guided samples there: an image recipe logs a grid per ``val_guidance`` label."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from framework.cli.main import main

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "image" / "shapes_flow.yaml")


def test_tensorboard_gets_the_loss_and_validation_images(tmp_path):
    assert main(["fit", "--config", RECIPE, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
                 "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
                 "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(tmp_path),
                 "--trainer.logger", "TensorBoardLogger", "--trainer.logger.save_dir", str(tmp_path),
                 "--model.backbone", "{dim: 16, depth: 1, heads: 2}", "--model.val_samples", "4",
                 "--model.val_steps", "2", "--data.init_args.n_train", "128", "--data.init_args.n_val", "32",
                 "--data.init_args.batch_size", "32"]) == 0
    (events,) = tmp_path.rglob("events.out.tfevents.*")
    acc = EventAccumulator(str(events.parent), size_guidance={"images": 0})
    acc.Reload()
    assert {"val/w1", "val/cfg3"} <= set(acc.Tags()["images"])
    (grid,) = acc.Images("val/cfg3")
    assert grid.step == 2 and grid.width > 16 and grid.height >= 16  # 4 pictures of 16 × 16
    assert "train/loss" in acc.Tags()["scalars"] and "val/cfg3/acc_shape" in acc.Tags()["scalars"]
