"""Progress bar totals count the batches the bar counts: after a resume and with accumulation."""

from __future__ import annotations

import lightning as L
import pytest

from framework.toy.data import MixtureData
from framework.training.checkpoint_io import ModelCheckpoint
from framework.training.module import GenerativeModule
from framework.training.progress import RichProgress, TQDMProgress, adopt


def _fit(tmp_path, max_steps: int, accumulate: int = 1, ckpt: str | None = None):
    data = MixtureData(n_train=512, n_val=64, batch_size=64)  # 8 batches an epoch
    conditions = [{"name": n, "labels": list(s.labels)} for n, s in data.specs.items()]
    model = GenerativeModule(family="flow", shape=[1, 2], backbone={"dim": 16, "depth": 1, "heads": 2},
                             conditions=conditions)
    bar = TQDMProgress()
    every_step = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=1)
    trainer = L.Trainer(max_steps=max_steps, accumulate_grad_batches=accumulate, accelerator="cpu",
                        logger=False, callbacks=[bar, every_step], enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=tmp_path)
    trainer.fit(model, data, ckpt_path=ckpt)
    return bar.train_progress_bar


@pytest.mark.parametrize("accumulate", [1, 2])
def test_total_is_the_batches_run_with_accumulation(tmp_path, accumulate):
    shown = _fit(tmp_path, max_steps=3, accumulate=accumulate)
    assert (shown.n, shown.total) == (3 * accumulate, 3 * accumulate)  # Lightning's bar: 6/3 with 2


def test_total_after_a_resume(tmp_path):
    _fit(tmp_path, max_steps=2)
    shown = _fit(tmp_path, max_steps=5, ckpt=str(tmp_path / "last.ckpt"))
    assert (shown.n, shown.total) == (5, 5)  # Lightning's bar: no total (5/?)


def test_adopt_keeps_the_bars_settings():
    trainer = L.Trainer(callbacks=[L.pytorch.callbacks.TQDMProgressBar(refresh_rate=7)], logger=False)
    adopt(trainer)
    (bar,) = [c for c in trainer.callbacks if isinstance(c, TQDMProgress)]
    assert bar.refresh_rate == 7
    rich = L.Trainer(callbacks=[L.pytorch.callbacks.RichProgressBar()], logger=False)
    adopt(rich)
    assert any(isinstance(c, RichProgress) for c in rich.callbacks)
