"""Every ``polyguide`` command in docs/pretrained.md runs, on a tiny pipeline of the same class.

The page shows commands on real weights (hub ids); each id maps to the tiny offline pipeline of
its class (:mod:`framework.pretrained.tiny`), and the command runs with that folder in its place,
fewer steps and samples, and inputs (``photo.png``, ``melody.wav``) written here. A command with
an unknown id, an option that does not exist, a condition the pipeline cannot take or a guidance
that does not parse fails this test.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from framework.cli.main import main
from framework.pretrained import tiny

PAGE = Path(__file__).resolve().parents[2] / "docs" / "pretrained.md"
#: hub id on the page → how to build the tiny pipeline of the same class
TINY = {
    "runwayml/stable-diffusion-v1-5": lambda d: tiny.save_sd(d / "sd"),
    "timbrooks/instruct-pix2pix": lambda d: tiny.save_sd(d / "p2p", "StableDiffusionInstructPix2PixPipeline",
                                                         scheduler="EulerAncestralDiscreteScheduler"),
    "stabilityai/stable-diffusion-3-medium-diffusers": lambda d: tiny.save_sd3(d / "sd3"),
    "amused/amused-256": lambda d: tiny.save_amused(d / "amused"),
    "facebook/musicgen-small": lambda d: tiny.save_musicgen(d / "musicgen"),
    "facebook/musicgen-melody": lambda d: tiny.save_musicgen(d / "melody", melody=True),
}


def commands() -> list[list[str]]:
    """The ``polyguide`` commands of the page's bash blocks (continuation lines joined)."""
    text = PAGE.read_text()
    out = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("polyguide "):
                out.append(shlex.split(line)[1:])
    return out


def _replace(argv: list[str], flag: str, value: str) -> list[str]:
    if flag in argv:
        argv[argv.index(flag) + 1] = value
        return argv
    return [*argv, flag, value]


def test_the_page_has_a_command_per_pipeline():
    ids = {a[a.index("--pretrained") + 1] for a in commands()}
    assert ids == set(TINY)


@pytest.mark.parametrize("argv", commands(), ids=lambda a: " ".join(a)[:80])
def test_each_command_runs_on_a_tiny_pipeline(argv, tmp_path, capsys):
    model_id = argv[argv.index("--pretrained") + 1]
    assert model_id in TINY, f"{model_id} has no tiny pipeline in this test"
    argv = _replace(list(argv), "--pretrained", str(TINY[model_id](tmp_path)))
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(tmp_path / "photo.png")
    for i, a in enumerate(argv):
        if a.startswith("image="):
            argv[i] = f"image={tmp_path / 'photo.png'}"
        if a.startswith("melody="):  # audio needs torchaudio (the feature extractor); else chroma
            if importlib.util.find_spec("torchaudio") is not None:
                import soundfile as sf

                sf.write(tmp_path / "melody.wav", np.sin(np.arange(32000) * 0.05).astype("float32"), 32000)
                argv[i] = f"melody={tmp_path / 'melody.wav'}"
            else:
                np.save(tmp_path / "chroma.npy", np.random.default_rng(0).random((9, 12)).astype("float32"))
                argv[i] = f"melody={tmp_path / 'chroma.npy'}"
    if argv[0] == "sample":
        steps = "5" if "musicgen" in model_id else "3"  # audio: ≥ 320 samples for the spectrogram grid
        argv = _replace(_replace(argv, "--steps", steps), "--n", "1")
        argv = _replace(argv, "--out", str(tmp_path / "out"))
        argv.append("--no-progress")
    else:
        argv = _replace(argv, "--steps", "3")
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    if argv[0] == "sample":
        assert any((tmp_path / "out").glob("sample_000.*")), out
    else:
        assert "step   0" in out
