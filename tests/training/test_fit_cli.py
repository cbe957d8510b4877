"""``polyguide fit`` is LightningCLI over the shipped recipes."""

from pathlib import Path

import pytest

from framework.cli.fit import fit_main
from framework.cli.main import main
from framework.core.errors import ArgumentError
from framework.training.module import load

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes" / "toy").glob("*.yaml"))
assert len(RECIPES) == 4, RECIPES  # never let an empty glob skip the test


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_every_toy_recipe_fits_and_its_checkpoint_samples(recipe, tmp_path):
    fit_main(["fit", "--config", str(recipe), "--trainer.max_steps", "3", "--trainer.val_check_interval", "3",
              "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
              "--trainer.default_root_dir", str(tmp_path), "--data.init_args.n_train", "256",
              "--data.init_args.n_val", "64", "--data.init_args.batch_size", "64",
              "--model.val_samples", "8", "--model.val_steps", "2"])
    (ckpt,) = tmp_path.rglob("last.ckpt")
    model = load(str(ckpt))
    out = model.sample({"shape": "star", "color": "blue"}, n=2, steps=3, seed=0)
    assert out.samples.shape[0] == 2 and out.nfe == 3 * 3  # the first training guidance is nested: 3 branches
    assert (tmp_path / "lightning_logs" / "version_0" / "config.yaml").exists()


def test_fit_reports_config_errors_clearly(tmp_path, capsys):
    with pytest.raises(ArgumentError, match="famly"):  # a user error: `polyguide fit` prints it in one line
        fit_main(["fit", "--config", str(RECIPES[0]), "--model.famly", "flow"])


@pytest.mark.fault("bad checkpoint file")
@pytest.mark.parametrize(("case", "message"), [("empty", "is empty (0 bytes; an interrupted save?)"),
                                               ("missing", "no such file")])
def test_fit_from_a_bad_checkpoint_is_one_line(tmp_path, capsys, case, message):
    path = tmp_path / "last.ckpt"
    if case == "empty":
        path.write_bytes(b"")
    code = main(["fit", "--config", str(RECIPES[0]), "--ckpt_path", str(path),
                 "--trainer.max_steps", "1", "--trainer.default_root_dir", str(tmp_path),
                 "--trainer.enable_progress_bar", "false", "--data.init_args.n_train", "256",
                 "--data.init_args.n_val", "64", "--data.init_args.batch_size", "64"])
    err = capsys.readouterr().err.strip().splitlines()  # after Lightning's own notes (devices...)
    assert code == 2 and err[-1] == f"polyguide fit: error: checkpoint {path}: {message}"
    assert not any("Traceback" in line for line in err)


def test_fit_silences_lightning_noise_but_not_real_warnings(tmp_path, capsys, caplog, recwarn):
    import logging

    caplog.set_level(logging.INFO)
    fit_main(["fit", "--config", str(RECIPES[0]), "--trainer.max_steps", "2",
              "--trainer.log_every_n_steps", "50",
              "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
              "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
              "--trainer.default_root_dir", str(tmp_path), "--data.init_args.n_train", "128",
              "--data.init_args.n_val", "64", "--data.init_args.batch_size", "64",
              "--model.val_samples", "8", "--model.val_steps", "2"])
    said = [str(w.message) for w in recwarn] + [r.getMessage() for r in caplog.records]
    said.append(capsys.readouterr().err)
    for noise in ("LightningCLI's args parameter", "tensorboardX", "💡 Tip", "LeafSpec"):
        assert not any(noise in s for s in said), noise
    # a real hint stays: 2 steps are fewer than the logging interval
    assert any("smaller than the logging interval" in s for s in said), said


def test_last_checkpoint_is_at_the_final_step(tmp_path):
    """5 steps with validation every 3: Lightning's own ``last`` would stay at step 3."""
    fit_main(["fit", "--config", str(RECIPES[0]), "--trainer.max_steps", "5",
              "--trainer.val_check_interval", "3", "--trainer.limit_val_batches", "1",
              "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(tmp_path),
              "--data.init_args.n_train", "512", "--data.init_args.n_val", "64",
              "--data.init_args.batch_size", "64", "--model.val_samples", "8", "--model.val_steps", "2"])
    from framework.model.checkpoints import read_checkpoint

    (last,) = tmp_path.rglob("last.ckpt")
    ckpt = read_checkpoint(last)
    assert ckpt["global_step"] == 5
    assert "current_model_state" in ckpt  # saved before the EMA callback copies the average at train end
    assert [p.name for p in last.parent.glob("*step=*.ckpt")] == ["epoch=0-step=3.ckpt"]


@pytest.mark.fault("one_line[text file]")
def test_a_missing_tokenizer_file_is_one_line_before_training(tmp_path, capsys):
    missing = tmp_path / "nope.json"
    code = main(["fit", "--config", str(ROOT / "recipes/text/shakespeare_ar.yaml"),
                 "--data.init_args.tokenizer", str(missing), "--trainer.max_steps", "1",
                 "--trainer.default_root_dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and f"tokenizer '{missing}'" in err, err
    assert not list(tmp_path.rglob("*.ckpt"))  # refused before any training
