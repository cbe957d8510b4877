"""Three guidance texts that raised generic exceptions (AttributeError in the node count, ValueError
from an overflowing schedule): each is now one line with exit code 2, or a finite guidance."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.cli.main import main
from framework.guidance import parse
from framework.guidance.schedules import linear

ROOT = Path(__file__).resolve().parents[2]
TEXT_IMAGE = str(ROOT / "recipes/image/checkpoints/shapes_text_flow.ckpt")
OUTSIDE = ["cond(text).within(0.2, 0.9, outside=3)", "cond(text).within(0.2, 0.9, outside='abc')"]
HUGE = "uncond + linear(1e308, -1e308)*(cond(text) - uncond)"


def one_line(capsys, command: str) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith(f"polyguide {command}: error: "), err
    return err[0]


@pytest.mark.fault("guidance syntax")
@pytest.mark.parametrize("text", OUTSIDE)
@pytest.mark.parametrize("command", ["explain", "sample"])
def test_within_outside_that_is_not_an_expression_is_one_line(text, command, capsys, tmp_path):
    argv = ["explain", text] if command == "explain" else [
        "sample", "--checkpoint", TEXT_IMAGE, "--guidance", text, "--out", str(tmp_path / "o"), "--n", "1"]
    assert main(argv) == 2
    assert "outside=...) takes a guidance expression" in one_line(capsys, command)


@pytest.mark.fault("guidance syntax")
def test_a_schedule_between_huge_weights_stays_finite(capsys):
    w = linear(1e308, -1e308)
    assert [w(t) for t in (0.0, 0.5, 1.0)] == [1e308, 0.0, -1e308]
    parse(HUGE).check()
    assert main(["explain", HUGE]) == 0


@pytest.mark.fault("guidance syntax")
def test_sampling_with_huge_schedule_weights_is_one_line(capsys, tmp_path):
    code = main(["sample", "--checkpoint", TEXT_IMAGE, "--guidance", HUGE, "--cond", "text=a red circle",
                 "--out", str(tmp_path / "o"), "--n", "1", "--steps", "2", "--no-progress"])
    assert code == 2
    assert "non-finite" in one_line(capsys, "sample")
    assert not (tmp_path / "o" / "samples.pt").exists()
