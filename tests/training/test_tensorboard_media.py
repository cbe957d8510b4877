"""Validation media in TensorBoard beyond image grids (tests/training/test_tensorboard.py): a motion
model's animated GIF (the modality's own writer), audio clips at the codec's rate, text samples. Each
is read back from the event file TensorBoard reads."""

from __future__ import annotations

import io
from types import SimpleNamespace

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from framework.training.media import log_samples
from framework.training.module import GenerativeModule


def _events(folder) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "audio": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_a_motion_model_logs_its_animated_gif(tmp_path):
    model = GenerativeModule(family="flow", modality="motion",
                             representation={"name": "rotations", "frames": 16, "frames_per_token": 4},
                             conditions=[{"name": "action", "labels": ["walk", "run"]}],
                             backbone={"dim": 16, "depth": 1, "heads": 2})
    out = model.sample({"action": "walk"}, n=3, steps=1, seed=0)
    assert out.media.shape == (3, 16, 22, 3)  # joint positions: neither an image nor a clip
    logger = TensorBoardLogger(save_dir=tmp_path, name="tb")
    model.trainer = L.Trainer(logger=logger, accelerator="cpu", enable_progress_bar=False,
                              enable_model_summary=False, enable_checkpointing=False)
    model._log_media("cfg3", out)
    logger.experiment.flush()
    (shown,) = _events(logger.log_dir).Images("val/cfg3")
    gif = Image.open(io.BytesIO(shown.encoded_image_string))
    assert gif.format == "GIF" and gif.n_frames == 16  # every frame of the clip, as `sample` writes it
    assert (gif.width, gif.height) == (shown.width, shown.height) and shown.width >= 200  # 2 × 2 cells


def test_audio_and_text_are_logged_and_other_media_is_left_out(tmp_path):
    tb = SummaryWriter(str(tmp_path))
    clips = torch.linspace(-2, 2, 2 * 800).reshape(2, 1, 800)  # clamped to [-1, 1]
    assert log_samples(tb, "val/a", 3, clips, clips, SimpleNamespace(sample_rate=8000), None) == ["audio"]
    texts = SimpleNamespace(decode_text=lambda ids: [f"line {int(i)}" for i in ids[:, 0]])
    ids = torch.tensor([[4, 1], [7, 2]])
    assert log_samples(tb, "val/t", 3, ids, ids, texts, None) == ["text"]
    points = torch.zeros(2, 1, 2)  # the toy points: no picture to show without a modality's writer
    assert log_samples(tb, "val/p", 3, points, points, SimpleNamespace(), None) == []
    tb.flush()
    acc = _events(tmp_path)
    assert sorted(acc.Tags()["audio"]) == ["val/a/0", "val/a/1"]
    (clip,) = acc.Audio("val/a/0")
    assert clip.step == 3 and clip.sample_rate == 8000 and clip.length_frames == 800
    (text,) = acc.Tensors("val/t/text_summary")
    shown = text.tensor_proto.string_val[0].decode()
    assert "line 4" in shown and "line 7" in shown
    assert not any("val/p" in tag for tags in acc.Tags().values() if isinstance(tags, list) for tag in tags)
