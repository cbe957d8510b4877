"""The shipped masked motion model: samples of one request differ (MaskGIT's choice temperature),
as much as real clips of the action do, and the family's choice temperature is checked."""

from pathlib import Path

import pytest
import torch

from framework.generators.masked import Masked
from framework.training.module import load
from modalities.motion.data import load_or_generate
from modalities.motion.metrics import request_diversity

CKPT = Path("recipes/motion/checkpoints/motion_masked.ckpt")


def test_choice_temperature_must_not_be_negative():
    with pytest.raises(ValueError, match="choice_temperature"):
        Masked(8, choice_temperature=-1.0)


@pytest.mark.skipif(not CKPT.exists(), reason="needs the shipped masked motion checkpoint")
def test_samples_of_one_request_are_not_copies():
    model = load(str(CKPT))
    walk = torch.full((8,), 0)  # action id of 'walk'
    out = model.sample({"action": "walk"}, "cfg(action, 2)", n=8, steps=16, seed=0)
    distinct = {tuple(t.tolist()) for t in out.samples}
    assert len(distinct) >= 6  # of 8 (3-4 with strict confidence order)
    real = load_or_generate(128, 778, None)
    ratio = request_diversity(out.media, {"action": walk}, torch.from_numpy(real["positions"]),
                              torch.from_numpy(real["action"]))
    assert ratio >= 0.5  # pose distance within the request / between real walks


@pytest.mark.skipif(not CKPT.exists(), reason="needs the shipped masked motion checkpoint")
def test_cli_takes_more_steps_than_positions(tmp_path, capsys):
    from framework.cli.main import main

    assert main(["sample", "--checkpoint", str(CKPT), "--cond", "action=jump", "--steps", "20", "--n", "2",
                 "--seed", "0", "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "--steps 20 on a masked model of 16 positions" in out and "20 steps" in out
