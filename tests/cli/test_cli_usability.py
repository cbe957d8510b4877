"""What a user meets: fast start (no Lightning when sampling), help with defaults, fresh printed
seeds, per-sample media files, and a representation file no writer overwrites."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from framework.cli.main import main
from framework.model.generative import GenerativeModel

ROOT = Path(__file__).resolve().parents[2]
IMAGE = str(ROOT / "recipes/image/checkpoints/shapes_flow.ckpt")
HEAVY = ("lightning", "lightning.pytorch", "pytorch_lightning", "diffusers")


def _modules_after(code: str) -> dict[str, bool]:
    """Run ``code`` in a fresh interpreter; which of torch and :data:`HEAVY` it imported."""
    names = [*HEAVY, "torch"]
    probe = f"{code}\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {names!r}}}))"
    env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
           "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_cli_imports_neither_torch_nor_lightning():
    loaded = _modules_after("import framework.cli.main\nimport framework")
    assert not any(loaded.values()), loaded


def test_sampling_and_explain_do_not_import_lightning(tmp_path):
    code = (f"from framework.cli.main import main\n"
            f"assert main(['sample', '--checkpoint', {IMAGE!r}, '--cond', 'shape=circle', "
            f"'--cond', 'color=red', '--n', '1', '--steps', '2', '--seed', '0', '--no-progress', "
            f"'--out', {str(tmp_path)!r}]) == 0\n"
            f"assert main(['explain', 'cfg(shape, 3)', '--steps', '2']) == 0")
    loaded = _modules_after(code)
    assert loaded["torch"] and not any(loaded[m] for m in HEAVY), loaded
    assert (tmp_path / "sample_000.png").is_file()


@pytest.mark.parametrize(("command", "expected"), [
    ("sample", ["default: the checkpoint's own guidance", "default: a fresh one, printed", "--device",
                "default: 30 for diffusion and flow", "autoregressive models their whole length",
                "sample_000.png", "samples.pt", "--continue"]),
    ("eval", ["default: the checkpoint's own guidance", "default 256", "default 0", "--device",
              "default: every categorical one"]),
    ("export", ["a training checkpoint", "the file to write", "--force"]),
    ("demo", ["<out>/toy/", "--device", "default: outputs"]),
])
def test_help_describes_every_option_and_its_default(command, expected, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for phrase in expected:
        assert " ".join(phrase.split()) in text, phrase


def _sample(out: Path, *extra: str) -> tuple[torch.Tensor, str]:
    argv = ["sample", "--checkpoint", IMAGE, "--cond", "shape=circle", "--cond", "color=red", "--n", "2",
            "--steps", "2", "--no-progress", "--out", str(out), *extra]
    assert main(argv) == 0
    return torch.load(out / "samples.pt")["samples"], ""


def test_a_fresh_seed_each_run_printed_and_repeatable(tmp_path, capsys):
    first, _ = _sample(tmp_path / "a")
    printed = capsys.readouterr().out
    seed = int(printed.split("seed ")[1].split()[0])
    assert f"repeat with --seed {seed}" in printed
    second, _ = _sample(tmp_path / "b")
    assert not torch.equal(first, second)  # two runs without --seed differ
    again, _ = _sample(tmp_path / "c", "--seed", str(seed))
    torch.testing.assert_close(again, first)  # the printed seed repeats the first run
    assert torch.load(tmp_path / "c" / "samples.pt")["seed"] == seed


def test_the_default_writer_and_samples_pt_are_different_files(tmp_path, capsys):
    """A model without a modality: the writer's media.pt and the CLI's samples.pt both survive."""
    torch.manual_seed(0)
    model = GenerativeModel(family="flow", shape=[4, 3], conditions=[{"name": "c", "labels": ["a", "b"]}],
                            backbone={"dim": 16, "depth": 1, "heads": 2})
    ckpt = tmp_path / "plain.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, ckpt)
    out = tmp_path / "out"
    assert main(["sample", "--checkpoint", str(ckpt), "--cond", "c=a", "--n", "3", "--steps", "2",
                 "--seed", "1", "--no-progress", "--out", str(out)]) == 0
    media, record = torch.load(out / "media.pt"), torch.load(out / "samples.pt")
    assert media.shape == record["samples"].shape == (3, 4, 3)
    torch.testing.assert_close(media, record["samples"])  # no codec: the media are the representation
    assert record["seed"] == 1 and record["conditions"] == {"c": "a"}
    assert f"wrote {out / 'media.pt'}" in capsys.readouterr().out


def test_fewer_steps_than_an_autoregressive_models_length_are_said(tmp_path, capsys):
    text_ar = str(ROOT / "recipes/text/checkpoints/shakespeare_ar.ckpt")
    assert main(["sample", "--checkpoint", text_ar, "--cond", "genre=comedy", "--n", "1", "--steps", "8",
                 "--seed", "0", "--no-progress", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr()
    assert "note: --steps 8 samples 8 of this autoregressive model's 64 tokens" in printed.out
    assert printed.err == ""
    assert (tmp_path / "sample_000.txt").is_file() and (tmp_path / "samples.txt").is_file()
