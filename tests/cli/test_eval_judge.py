"""``polyguide eval`` scores with the judge validation uses and writes nothing beside the checkpoint."""

import shutil
from pathlib import Path

from framework.cli.main import main
from framework.core import plugins

SHIPPED = Path(__file__).resolve().parents[2] / "recipes" / "image" / "checkpoints"


def test_eval_uses_validations_judge_and_writes_nothing_beside_the_checkpoint(tmp_path, capsys):
    ckpt = tmp_path / "mine.ckpt"
    shutil.copy(SHIPPED / "shapes_flow.ckpt", ckpt)
    assert main(["eval", "--checkpoint", str(ckpt), "--guidance", "cond(shape, color)", "--n", "8",
                 "--steps", "2", "--no-progress"]) == 0
    assert "| cond(shape, color) |" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["mine.ckpt"]  # no judge trained into the folder
    # the judge's cache is the one validation uses (GenerativeModule._validation_judge)
    assert plugins.judge_cache(plugins.get("image")) == SHIPPED
