"""Loading the audio codec prints no transformers progress bar, and leaves transformers' settings as
they were: ``polyguide sample`` of the shipped codec model writes only its own lines."""

import subprocess
import sys
from pathlib import Path

import torch
from transformers.utils import logging

from modalities.audio.codec import EncodecCodec
from modalities.audio.features import limit_peak

ROOT = Path(__file__).resolve().parents[3]
CODEC = ROOT / "recipes/audio/checkpoints/codec"


def test_loading_restores_transformers_settings_and_decodes_as_from_pretrained():
    from transformers.models.encodec.modeling_encodec import EncodecModel

    logging.enable_progress_bar()
    before = logging.get_verbosity()
    codec = EncodecCodec(str(CODEC), layout="tokens")
    assert logging.is_progress_bar_enabled() and logging.get_verbosity() == before
    # the same weights as a plain from_pretrained: the same audio from the same codes
    plain = EncodecModel.from_pretrained(str(CODEC), local_files_only=True).eval()
    codes = torch.randint(codec.vocab_size, (2, *codec.shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = limit_peak(plain.decoder(plain.quantizer.decode(codes.transpose(0, 1)))[..., :codec.samples])
    torch.testing.assert_close(codec.decode(codes), want, atol=0, rtol=0)


def test_cli_sample_of_the_codec_model_prints_no_loading_bar(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "framework.cli", "sample", "--checkpoint",
         str(ROOT / "recipes/audio/checkpoints/words_ar.ckpt"), "--cond", "word=two", "--n", "1",
         "--seed", "0", "--out", str(tmp_path), "--no-progress"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "Loading weights" not in run.stderr and "it/s" not in run.stderr, run.stderr
    assert (tmp_path / "sample_000.wav").is_file()
