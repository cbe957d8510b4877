"""``polyguide new-modality``: the project it writes registers, passes its own tests (the contract
suite and fit → sample → eval with a tiny model), and is the one ``docs/plugins.md`` shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from framework.cli.main import main
from framework.scaffold import TEMPLATE, new_modality, template_files

ROOT = Path(__file__).resolve().parents[2]


def register(project: Path, name: str, site: Path) -> dict[str, str]:
    """Register ``project``'s plugin without installing it: an entry point in a ``.dist-info``
    folder on ``PYTHONPATH`` (what pip writes), next to the package itself. Returns the environment."""
    info = site / f"polyguide_{name}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: polyguide-{name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(
        f"[polyguide.modalities]\n{name} = polyguide_{name}:{name.title().replace('_', '')}Modality\n")
    path = os.pathsep.join([str(project), str(site), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def test_a_new_plugin_passes_its_own_tests(tmp_path, capsys):
    """Written, registered, then its tests run: 8 contract checks (one of them samples in a fresh
    interpreter and fails if Lightning was imported) and fit (4 steps) → sample → eval."""
    assert main(["new-modality", "wave", "--out", str(tmp_path)]) == 0
    project = tmp_path / "polyguide_wave"
    assert f"wrote {project}" in capsys.readouterr().out
    files = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    assert files == sorted(str(f).replace("spectra", "wave") for f in template_files())
    assert "class WaveModality(Modality)" in (project / "polyguide_wave" / "__init__.py").read_text()
    env = register(project, "wave", tmp_path / "site")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "9 passed" in done.stdout, done.stdout[-2000:]


def test_the_plugin_guide_shows_the_template_verbatim():
    guide = (ROOT / "docs" / "plugins.md").read_text()
    for rel in template_files():
        if rel.name != "README.md":
            assert f"\n{(TEMPLATE / rel).read_text()}```\n" in guide, f"docs/plugins.md is out of date: {rel}"


@pytest.mark.parametrize(("args", "message"), [
    (["new-modality", "My-Mod"], "modality name 'My-Mod' must be lower-case"),
    (["new-modality", "class"], "modality name 'class' must be lower-case"),
    (["new-modality", "image"], "a modality named 'image' is already installed"),
])
def test_bad_names_are_one_line_errors(args, message, tmp_path, capsys):
    assert main([*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_nothing_is_overwritten(tmp_path, capsys):
    new_modality("wave", tmp_path)
    before = (tmp_path / "polyguide_wave" / "pyproject.toml").read_text()
    assert main(["new-modality", "wave", "--out", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "polyguide_wave" / "pyproject.toml").read_text() == before
