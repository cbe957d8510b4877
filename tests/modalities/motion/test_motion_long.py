"""Clips of any length (``--seconds``: overlapping windows, each in-painted on the previous one's last
frames) and export at 20 / 30 / 60 fps (``--fps``)."""

from itertools import pairwise
from pathlib import Path

import pytest
import torch

from framework.cli.main import main
from framework.core.errors import ArgumentError
from modalities.motion.actions import FRAMES
from modalities.motion.bvh import read_bvh
from modalities.motion.longer import (
    OVERLAP,
    check_fps,
    check_seconds,
    resample,
    sample_long,
    seam_acceleration,
    window_starts,
)

MASKED = Path("recipes/motion/checkpoints/motion_masked.ckpt")


@pytest.mark.parametrize("bad", ["abc", "0", "-1", "nan", "inf", "61"])
def test_bad_seconds_are_one_line_errors(bad):
    with pytest.raises(ArgumentError, match=r"^--seconds"):
        check_seconds(bad)


@pytest.mark.parametrize("bad", ["25", "abc", "0", "30.5"])
def test_bad_fps_are_one_line_errors(bad):
    with pytest.raises(ArgumentError, match=r"^--fps .*20, 30, 60"):
        check_fps(bad)


def test_seconds_to_frames_and_windows_cover_the_clip():
    assert check_seconds("1") == 20 and check_seconds("10") == 200 and check_seconds(3.2) == FRAMES
    for frames in (20, 64, 65, 200, 1200):
        starts = window_starts(frames)
        assert starts[-1] + FRAMES >= frames
        assert all(b - a == FRAMES - OVERLAP for a, b in pairwise(starts))
        assert len(starts) == (1 if frames <= FRAMES else 1 + -(-(frames - FRAMES) // (FRAMES - OVERLAP)))


def test_resample_keeps_the_frames_it_lands_on_and_interpolates_between():
    pos = torch.randn(2, 21, 22, 3, generator=torch.Generator().manual_seed(0))
    up = resample(pos, 60)
    assert up.shape == (2, 61, 22, 3)
    assert torch.equal(up[:, ::3], pos)
    assert torch.allclose(up[:, 1], pos[:, 0] * 2 / 3 + pos[:, 1] / 3, atol=1e-6)
    assert resample(pos, 30).shape[1] == 31 and resample(pos, 20) is pos


@pytest.mark.filterwarnings("ignore::UserWarning")  # the untrained model's action-only subset
def test_flow_windows_inpaint_the_previous_windows_last_frames(make_motion_model):
    model = make_motion_model()
    outs = []

    def spy(m, raw, guidance, **kw):
        out = m.sample(raw, guidance, **kw)
        outs.append(out.samples.clone())
        return out

    torch.manual_seed(0)
    long = sample_long(model, {"action": "walk"}, "cond(action)", frames=150, n=2, seed=1, steps=3,
                       sample=spy)
    k = OVERLAP // (FRAMES // model.shape[0])
    assert long.positions.shape == (2, 150, 22, 3) and long.joins == [64, 112] and len(outs) == 3
    assert long.windows == 3 and long.nfe == 3 * 3
    for prev, new in pairwise(outs):  # the known tokens end where the flow's path ends: ≈ x_known
        assert torch.allclose(new[:, :k], prev[:, -k:], atol=0.05 * float(prev.abs().max()))
        assert not torch.allclose(new[:, k:], prev[:, k - new.shape[1]:], atol=1e-3)


@pytest.fixture(scope="module")
def masked():
    from framework.cli.commands import _load

    return _load(MASKED)


def test_masked_long_clip_keeps_the_given_tokens_and_is_seamless(masked):
    outs = []

    def spy(m, raw, guidance, **kw):
        assert ("init" in kw) == bool(outs)
        out = m.sample(raw, guidance, **kw)
        outs.append(out.samples.clone())
        return out

    long = sample_long(masked, {"action": "walk"}, "cfg(action, 2)", frames=112, n=3, seed=2, steps=8,
                       sample=spy)
    assert long.positions.shape == (3, 112, 22, 3) and long.joins == [64]
    assert torch.equal(outs[1][:, :4], outs[0][:, -4:])
    # the joins accelerate no more than twice as hard as the rest (measured 0.85 at 10 s, 8 clips)
    assert seam_acceleration(long.positions, long.joins) < 2.0
    short = sample_long(masked, {"action": "walk"}, "cfg(action, 2)", frames=20, n=1, seed=2, steps=4)
    assert short.positions.shape == (1, 20, 22, 3) and short.joins == [] and short.windows == 1


def test_cli_writes_a_long_clip_at_the_asked_frame_rate(tmp_path, capsys):
    out = tmp_path / "long"
    assert main(["sample", "--checkpoint", str(MASKED), "--cond", "action=run", "--seconds", "3.5",
                 "--fps", "30", "--n", "1", "--steps", "6", "--seed", "3", "--out", str(out),
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "70 frames (3.50 s) from 2 windows" in text and "acceleration at the joins" in text
    bvh = (out / "sample_00.bvh").read_text()
    assert "Frames: 104" in bvh and "Frame Time: 0.0333" in bvh
    assert read_bvh(out / "sample_00.bvh").shape == (104, 22, 3)
    assert torch.load(out / "samples.pt", weights_only=True)["samples"].shape == (1, 70, 22, 3)


@pytest.mark.parametrize("args, message", [
    (["--seconds", "0"], "--seconds 0: a motion clip is 0.05 to 60 s long"),
    (["--fps", "24"], "--fps 24: motion is exported at 20, 30, 60 fps"),
])
def test_cli_bad_length_is_one_line_exit_2(tmp_path, capsys, args, message):
    assert main(["sample", "--checkpoint", str(MASKED), "--cond", "action=run", "--n", "1", "--steps", "2",
                 "--out", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"polyguide sample: error: {message}"
