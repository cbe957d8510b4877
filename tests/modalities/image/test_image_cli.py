"""The image main job and the sample / eval / modalities commands on the shipped checkpoint."""

import json
from pathlib import Path

import pytest
import torch

from framework.cli.main import main
from modalities.image.demo import CHECKPOINT, run_demo

CKPT = str(CHECKPOINT)
PAIR_GUIDANCE = "uncond + 4*(cond(shape) - uncond) + 3*(cond(color) - uncond)"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out, per_request=4, steps=12, progress=False)


def test_demo_writes_a_grid_per_expression_and_a_summary(demo):
    out, result = demo
    assert len(list(out.glob("*.png"))) == 8  # 7 expressions + the negative prompt
    summary = json.loads((out / "summary.json").read_text())
    assert [r["guidance"] for r in summary["rows"]] == [r["guidance"] for r in result["rows"]]
    table = (out / "summary.md").read_text()
    head = "| guidance | valid | acc_shape | acc_color | acc_all | rule_valid | rule_acc_all | fd | diversity"
    assert head in table


def test_demo_guidance_raises_accuracy_with_exact_nfe(demo):
    rows = {r["guidance"]: r for r in demo[1]["rows"]}
    base = rows["no guidance (w=1)"]
    cfg = rows["cfg joint, w=4"]["acc_all"]
    assert cfg >= 0.9 and cfg > base["acc_all"], rows
    assert rows["independent 3, 3"]["acc_all"] > base["acc_all"], rows
    # guiding the shape alone leaves the colour unconditioned: colour accuracy collapses
    assert rows["cfg on shape only, w=4"]["acc_color"] < base["acc_color"] - 0.3
    nfe = {k: r["nfe"] for k, r in rows.items()}
    assert nfe["no guidance (w=1)"] == 12 and nfe["cfg joint, w=4"] == 24 and nfe["nested 2, 4"] == 36
    assert 12 < nfe["interval w=4, τ∈[0.2, 0.8]"] < 24
    neg = demo[1]["negative"]
    away, base = neg["circle, not red (negative w=1.5)"], neg["circle, no guidance"]
    assert away["red"] < base["red"]
    assert away["circle"] >= base["circle"] - 0.25  # the weight is mild enough to keep the shape


def test_sample_writes_a_grid_with_the_requested_guidance(tmp_path, capsys):
    assert main(["sample", "--checkpoint", CKPT, "--cond", "shape=circle", "--cond", "color=red",
                 "--guidance", PAIR_GUIDANCE, "--steps", "6", "--n", "4", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "NFE 18 (3.00/step)" in printed and (tmp_path / "grid.png").exists()
    saved = torch.load(tmp_path / "samples.pt")
    assert saved["samples"].shape == (4, 16, 48) and saved["guidance"] == PAIR_GUIDANCE


@pytest.mark.parametrize(("cond", "message"), [
    ("colour=red", "unknown condition 'colour'; this model has: shape (circle|square|triangle|cross), color"),
    ("color=purple", "unknown value 'purple' for condition 'color'; valid: red, green, blue, yellow"),
    ("color", "--cond takes name=value, got 'color'"),
])
def test_sample_names_the_bad_condition_and_the_valid_ones(cond, message, tmp_path, capsys):
    assert main(["sample", "--checkpoint", CKPT, "--cond", cond, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_sample_reports_a_missing_checkpoint(tmp_path, capsys):
    assert main(["sample", "--checkpoint", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path)]) == 2
    assert "nope.ckpt does not exist" in capsys.readouterr().err


def test_eval_scores_each_guidance(tmp_path, capsys):
    assert main(["eval", "--checkpoint", CKPT, "--guidance", "cond(shape, color)", "--guidance",
                 "cfg((shape, color), 4)", "--conditions", "shape", "color", "--n", "32", "--steps", "8",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    rows = json.loads((tmp_path / "eval.json").read_text())
    assert [r["nfe"] for r in rows] == [8, 16] and set(rows[0]) >= {"acc_shape", "acc_color", "acc_all", "fd"}
    assert "acc_position" not in rows[0]  # only the requested conditions are judged
    assert "| cfg((shape, color), 4) |" in capsys.readouterr().out


def test_modalities_lists_the_image_plugin(capsys):
    assert main(["modalities"]) == 0
    out = capsys.readouterr().out
    assert "image:" in out and "representations: patches, palette" in out
    assert f"recipe  {Path('recipes/image/shapes_flow.yaml')}" in out or "shapes_flow.yaml" in out
