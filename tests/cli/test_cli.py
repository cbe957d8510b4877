"""The polyguide CLI: the demo (main job), explain, and error handling."""

import json

import pytest

from framework.cli.main import main


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--toy", "--out", str(root), "--n", "200", "--steps", "20", "--no-progress"]) == 0
    out = root / "toy"  # its own folder: the main demo's summary.md / summary.json are not overwritten
    assert sorted(p.name for p in root.iterdir()) == ["toy"]
    return out, {r["label"]: r for r in json.loads((out / "summary.json").read_text())["rows"]}


def test_demo_writes_a_picture_and_a_table(demo):
    out, rows = demo
    png = (out / "guidance_demo.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    md = (out / "summary.md").read_text()
    assert all(label in md for label in rows)


def test_demo_guidance_raises_accuracy_with_exact_nfe(demo):
    _, rows = demo
    base = rows["no guidance (w=1)"]["accuracy"]
    assert base < 0.9
    for label in ("cfg joint w=3", "independent 3, 3", "nested 2, 4", "interval w=4, τ∈[0.2, 0.8]"):
        assert rows[label]["accuracy"] > base + 0.1, (label, rows[label])
    nfe = {k: r["nfe_per_step"] for k, r in rows.items()}
    assert nfe["no guidance (w=1)"] == 1 and nfe["cfg joint w=3"] == 2
    assert nfe["independent 3, 3"] == 3 and nfe["nested 2, 4"] == 3
    assert 1 < nfe["interval w=4, τ∈[0.2, 0.8]"] < 2  # one branch outside the window
    assert 1 < nfe["adaptive cfg w=3"] < 2  # the unconditional branch stops being evaluated


def test_explain_shows_branches_plan_and_subsets(capsys):
    assert main(["explain", "nested([shape, color], [2, 5])", "--steps", "4"]) == 0
    out = capsys.readouterr().out
    assert "3 branch(es): cond('color', 'shape'), cond('shape'), uncond()" in out
    assert "total NFE 12 (3.00 per step)" in out
    assert "{color, shape}" in out and "∅ (unconditional)" in out


def test_explain_interval_plans_one_branch_outside_the_window(capsys):
    assert main(["explain", "interval((shape, color), 4, 0.3, 0.6)", "--steps", "4"]) == 0
    assert "total NFE 5 (1.25 per step)" in capsys.readouterr().out


@pytest.mark.parametrize(("text", "message"), [
    ("uncond + 4*(cond(shape) - uncond", "'(' was never closed"),
    ("uncond + 4*cond(shape)", "coefficients summing to 1"),
    ("cnd(shape)", "did you mean 'cond'"),
])
def test_explain_errors_exit_2_without_traceback(capsys, text, message):
    assert main(["explain", text]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out
