"""``polyguide fit --config`` files that are not valid, safe YAML: one line, exit code 2, before
OmegaConf or jsonargparse read them (an alias bomb is measured without being expanded)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from framework.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def _bomb(levels: int = 9) -> str:
    lines = ["a: &a [" + ", ".join(['"lol"'] * 9) + "]"]
    for prev, name in zip("abcdefghi"[: levels - 1], "bcdefghij"[: levels - 1], strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join([*lines, "model: {family: flow}"]) + "\n"


CASES = {
    "unclosed bracket": ("model:\n  family: [flow\n", "is not valid YAML (line 3, column 1)"),
    "tab indent": ("model:\n\tfamily: flow\n", "found character '\\t' that cannot start any token"),
    "python tag": ('model: !!python/object/apply:os.system ["touch {marker}"]\n',
                   "could not determine a constructor for the tag"),
    "python name tag": ("model: !!python/name:os.system\n", "could not determine a constructor"),
    "not utf-8": (b"model: \xff\xfe\n", "is not UTF-8 text"),
    "FIFO": (None, "is a FIFO (named pipe)"),
}


@pytest.mark.fault("bad recipe file")
@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_recipe_file_is_one_line(tmp_path, capsys, case, never_block):
    content, message = CASES[case]
    path, marker = tmp_path / "recipe.yaml", tmp_path / "PWNED"
    if content is None:
        os.mkfifo(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content.format(marker=marker))
    assert main(["fit", "--config", str(path)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("polyguide fit: error: config file") and message in err[0], err
    assert not marker.exists()


@pytest.mark.fault("hostile size")
def test_an_alias_bomb_is_refused_without_expanding_it(tmp_path):
    """9 levels of 9 aliases: 387 million strings once expanded. Run capped (2 GiB, 120 s) so that a
    regression fails instead of taking the machine down."""
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb())
    assert path.stat().st_size < 1000

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))

    p = subprocess.run([sys.executable, "-m", "framework.cli", "fit", "--config", str(path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, preexec_fn=cap,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and "alias bomb" in lines[0], p.stderr[-2000:]


def test_recipes_with_modest_aliases_still_load():
    from framework.cli.recipe_files import check_recipe

    for recipe in sorted(ROOT.glob("recipes/*/*.yaml")):
        check_recipe(recipe)
