"""Recipes and checkpoints run no code: only allow-listed classes are built (framework.core.allowlist).

Each payload would create a marker file when its class is instantiated (``logging.FileHandler``
opens its file; ``subprocess.Popen`` runs ``touch``). The control tests switch the guard off and
show that the very same files do create the marker, so the refusals are not an accident of the
files being broken in some other way.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
import torch
import yaml

import framework.core.allowlist as allowlist
from framework.cli.main import main
from framework.model.generative import GenerativeModel

ROOT = Path(__file__).resolve().parents[2]
TOY = ROOT / "recipes" / "toy" / "points_flow.yaml"
FAST = ["--trainer.max_steps", "1", "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
        "--trainer.enable_checkpointing", "false", "--data.init_args.n_train", "64",
        "--data.init_args.n_val", "64", "--data.init_args.batch_size", "64", "--model.val_samples", "4",
        "--model.val_steps", "1", "--trainer.limit_val_batches", "0"]
MALICIOUS = pytest.mark.fault("malicious file")


def payload(kind: str, marker: Path) -> dict:
    if kind == "FileHandler":
        return {"class_path": "logging.FileHandler", "init_args": {"filename": str(marker)}}
    return {"class_path": "subprocess.Popen", "init_args": {"args": f"touch {marker}", "shell": True}}


def ran(marker: Path) -> bool:
    """Whether the payload ran (``Popen`` touches the file in a child process: give it a moment)."""
    for _ in range(40):
        if marker.exists():
            return True
        time.sleep(0.05)
    return False


def evil_recipe(tmp_path: Path, kind: str, where: str) -> Path:
    marker = tmp_path / "PWNED"
    recipe = yaml.safe_load(TOY.read_text())
    recipe["trainer"]["default_root_dir"] = str(tmp_path / "logs")
    if where == "family_args":
        recipe["model"]["family_args"] = {"x": payload(kind, marker)}
    elif where == "callback":
        recipe["trainer"]["callbacks"].append(payload(kind, marker))
    else:  # the data module itself
        recipe["data"] = payload(kind, marker)
    path = tmp_path / "evil.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def evil_checkpoint(tmp_path: Path, kind: str = "FileHandler") -> Path:
    """A plain-data checkpoint (tensors, dicts, strings: ``weights_only`` loads it) whose
    hyper-parameters carry a class_path inside ``family_args``."""
    recipe = yaml.safe_load(TOY.read_text())["model"]
    model = GenerativeModel(family="flow", shape=recipe["shape"], conditions=recipe["conditions"],
                            backbone={"dim": 16, "depth": 1, "heads": 2})
    hp = dict(model.hparams)
    hp["family_args"] = {"x": payload(kind, tmp_path / "PWNED")}
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hp}, path)
    return path


@pytest.fixture
def unguarded(monkeypatch):
    """The guard switched off: jsonargparse's own (warn-only) import policy, no class_path check."""
    monkeypatch.setattr(allowlist, "enforced", contextlib.nullcontext)
    monkeypatch.setattr(allowlist, "check_class_paths", lambda *a, **k: None)


def one_line(capsys) -> str:
    """The last line on stderr (Lightning may print notes before it), which must be the error."""
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err and err[-1].startswith("polyguide "), err
    return err[-1]


@MALICIOUS
@pytest.mark.parametrize("where", ["family_args", "callback", "data"])
@pytest.mark.parametrize("kind", ["FileHandler", "Popen"])
def test_fit_config_builds_no_class_outside_the_allow_list(tmp_path, capsys, kind, where):
    code = main(["fit", "--config", str(evil_recipe(tmp_path, kind, where)), *FAST])
    assert code == 2
    line = one_line(capsys)
    assert line.startswith("polyguide fit: error:") and ("not on polyguide's allow-list" in line
                                                         or "not allowed" in line), line
    assert not ran(tmp_path / "PWNED")


@pytest.mark.parametrize("kind", ["FileHandler", "Popen"])
def test_control_the_same_recipe_runs_code_without_the_guard(tmp_path, capsys, unguarded, kind):
    main(["fit", "--config", str(evil_recipe(tmp_path, kind, "family_args")), *FAST])
    assert ran(tmp_path / "PWNED")


@MALICIOUS
def test_fit_ckpt_path_hyper_parameters_build_no_class_outside_the_allow_list(tmp_path, capsys):
    ckpt = evil_checkpoint(tmp_path)
    code = main(["fit", "--config", str(TOY), "--ckpt_path", str(ckpt),
                 "--trainer.default_root_dir", str(tmp_path / "logs"), *FAST])
    assert code == 2
    line = one_line(capsys)
    assert "logging.FileHandler" in line and "allow-list" in line, line
    assert not ran(tmp_path / "PWNED")


def test_control_the_same_checkpoint_runs_code_in_fit_without_the_guard(tmp_path, capsys, unguarded):
    main(["fit", "--config", str(TOY), "--ckpt_path", str(evil_checkpoint(tmp_path)),
          "--trainer.default_root_dir", str(tmp_path / "logs"), *FAST])
    assert ran(tmp_path / "PWNED")


@MALICIOUS
@pytest.mark.parametrize("command", ["sample", "eval", "export"])
def test_sample_eval_export_refuse_the_same_checkpoint(tmp_path, capsys, command):
    ckpt = str(evil_checkpoint(tmp_path))
    argv = {"sample": ["sample", "--checkpoint", ckpt, "--out", str(tmp_path / "o"), "--n", "1",
                       "--steps", "1"],
            "eval": ["eval", "--checkpoint", ckpt, "--n", "2", "--steps", "1"],
            "export": ["export", ckpt, str(tmp_path / "x.ckpt")]}[command]
    assert main(argv) == 2
    line = one_line(capsys)
    assert "logging.FileHandler" in line and "allow-list" in line, line
    assert not ran(tmp_path / "PWNED")
    assert not (tmp_path / "x.ckpt").exists()


@MALICIOUS
def test_a_lightning_class_path_in_a_checkpoint_is_refused_too(tmp_path):
    from framework.model.checkpoints import CheckpointError, load_checkpoint

    ckpt = torch.load(evil_checkpoint(tmp_path), weights_only=True)
    ckpt["hyper_parameters"] = {"_class_path": "subprocess.Popen", **ckpt["hyper_parameters"]}
    ckpt["hyper_parameters"].pop("family_args")
    torch.save(ckpt, tmp_path / "sub.ckpt")
    with pytest.raises(CheckpointError, match=r"subprocess\.Popen"):
        load_checkpoint(tmp_path / "sub.ckpt")


def test_the_allow_list_covers_the_recipes_and_can_be_extended(monkeypatch):
    for path in ("framework.toy.data.MixtureData", "modalities.image.data.ShapesData",
                 "lightning.pytorch.callbacks.ModelCheckpoint", "torch.optim.AdamW",
                 "torch.optim.lr_scheduler.OneCycleLR", "lightning.pytorch.loggers.CSVLogger"):
        assert allowlist.is_allowed(path), path
    for path in ("subprocess.Popen", "os.system", "logging.FileHandler", "frameworkx.Evil", "torch.load"):
        assert not allowlist.is_allowed(path), path
    monkeypatch.setenv(allowlist.ENV, "logging.FileHandler, mylab.callbacks")
    assert allowlist.is_allowed("logging.FileHandler") and allowlist.is_allowed("mylab.callbacks.Mine")
    assert not allowlist.is_allowed("logging.Handler")
    monkeypatch.setenv(allowlist.ENV, "jsonargparse")
    with pytest.raises(allowlist.ClassNotAllowed, match="jsonargparse"):
        allowlist.allowed_entries()


def test_an_extended_allow_list_lets_fit_build_the_class(tmp_path, capsys, monkeypatch):
    """The documented way to trust a class works end to end (here a harmless FileHandler callback
    would still be refused by Lightning as a callback, so put it where Any is accepted)."""
    monkeypatch.setenv(allowlist.ENV, "logging.FileHandler")
    main(["fit", "--config", str(evil_recipe(tmp_path, "FileHandler", "family_args")), *FAST])
    assert ran(tmp_path / "PWNED")
