"""``polyguide sample`` / ``eval`` / ``fit`` on audio checkpoints: WAVs, a grid, a page, clear errors."""

import json
from pathlib import Path

import lightning as L
import pytest
import torch

from framework.cli.main import main
from framework.training.module import GenerativeModule
from modalities.audio import plugin
from modalities.audio.data import WordsData
from modalities.audio.speech import SPEAKERS, WORDS

GUIDANCE = "independent([word, speaker], [3, 2])"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny flow model on log-mel, trained for two steps and saved by Lightning."""
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    mel = {"name": "mel", "n_mels": 16, "frames_per_token": 4, "gl_iters": 4}
    model = GenerativeModule(family="flow", modality="audio", representation=mel,
                             conditions=[{"name": "word", "labels": list(WORDS)},
                                         {"name": "speaker", "labels": list(SPEAKERS)}],
                             backbone={"dim": 32, "depth": 1, "heads": 2}, guidance=[GUIDANCE])
    data = WordsData(n_train=4, n_val=2, batch_size=2, cache_dir=str(root))
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, default_root_dir=root)
    trainer.fit(model, datamodule=data)
    path = root / "tiny.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_sample_writes_wavs_grid_and_page(checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sample", "--checkpoint", str(checkpoint), "--cond", "word=seven",
                 "--cond", "speaker=en-us+f1", "--guidance", GUIDANCE, "--steps", "3", "--n", "2",
                 "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "NFE 9 (3.00/step)" in printed
    assert len(list(out.glob("*.wav"))) == 2 and (out / "grid.png").exists()
    page = (out / "index.html").read_text()
    assert page.count("<audio") == 2 and "word=seven" in page


@pytest.mark.fault("bad condition")
@pytest.mark.parametrize(("cond", "message"), [
    ("word=eleven", "unknown value 'eleven' for condition 'word'; valid: zero, one, two"),
    ("speaker=en-xx", "unknown value 'en-xx' for condition 'speaker'"),
    ("voice=en-us", "unknown condition 'voice'; this model has: word"),
])
def test_bad_conditions_are_one_line_and_exit_2(checkpoint, cond, message, tmp_path, capsys):
    assert main(["sample", "--checkpoint", str(checkpoint), "--cond", cond, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_eval_reports_word_accuracy(checkpoint, tmp_path, monkeypatch, capsys):
    real = plugin.words_judge
    monkeypatch.setattr(plugin, "words_judge", lambda cache: real(cache, n_train=30, n_val=20, epochs=1))
    from modalities.audio import speech

    load = speech.load_words
    monkeypatch.setattr(speech, "load_words", lambda n, seed, cache_dir=None: load(n, seed, tmp_path))
    assert main(["eval", "--checkpoint", str(checkpoint), "--guidance", "cond(word)",
                 "--guidance", "cfg(word, 2)",
                 "--conditions", "word", "--n", "4", "--steps", "2", "--cache", str(tmp_path),
                 "--out", str(tmp_path / "eval"), "--no-progress"]) == 0
    rows = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert [r["nfe"] for r in rows] == [2, 4] and "acc_word" in rows[0] and "acc_speaker" not in rows[0]
    assert "| guidance | acc_word |" in capsys.readouterr().out


def test_fit_trains_the_codec_recipe_form(tmp_path):
    """A recipe whose model names a class_path trains that module through ``polyguide fit``."""
    cfg = tmp_path / "codec.yaml"
    export = tmp_path / "codec"
    cfg.write_text(f"""
seed_everything: 0
model:
  class_path: modalities.audio.codec_train.CodecModule
  init_args:
    config: {{num_filters: 4, hidden_size: 8, codebook_dim: 8, codebook_size: 16, target_bandwidths: [6.4],
             upsampling_ratios: [5, 4]}}
    crop: 3200
    export_to: {export}
data:
  class_path: modalities.audio.data.WordsData
  init_args: {{n_train: 2, n_val: 2, batch_size: 2, cache_dir: {tmp_path}}}
trainer:
  max_steps: 1
  limit_val_batches: 1
  num_sanity_val_steps: 0
  logger: false
  enable_checkpointing: false
  enable_progress_bar: false
  default_root_dir: {tmp_path}
""")
    assert main(["fit", "--config", str(cfg)]) == 0
    from modalities.audio.codec import EncodecCodec

    codec = EncodecCodec(str(export), layout="latents")
    assert codec.shape == (800, 8) and Path(export, "polyguide_codec.json").exists()
