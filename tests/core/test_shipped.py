"""Shipped recipes and checkpoints: found from any directory, and after a real (non-editable) install.

The install test builds a wheel of this repository offline (``--no-build-isolation --no-deps``,
as ``test_plugins.py`` does for the example plugin) from a copy that keeps every recipe YAML but
only one checkpoint (the real wheel holds all of them, ~70 MB; the packaging rules are the same),
installs it into a fresh folder, and from a directory with no ``recipes/`` in it lists the image
recipes and loads ``recipes/image/checkpoints/shapes_flow.ckpt`` the way the docs name it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from framework.core import plugins, shipped
from framework.training.module import load

ROOT = Path(__file__).resolve().parents[2]
CKPT = "recipes/image/checkpoints/shapes_flow.ckpt"


def test_docs_paths_resolve_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no recipes/ here
    found = shipped.resolve(CKPT)
    assert found.is_file() and found == shipped.root() / "image" / "checkpoints" / "shapes_flow.ckpt"
    model = load(CKPT)
    assert set(model.specs) == {"shape", "color", "position"}
    # a missing file comes back unchanged, so the caller's error names what the user typed
    missing = "recipes/image/checkpoints/nope.ckpt"
    assert shipped.resolve(missing) == Path(missing)
    assert shipped.resolve("elsewhere/x.ckpt") == Path("elsewhere/x.ckpt")
    # a file of that name in the working directory wins over the shipped one
    local = tmp_path / CKPT
    local.parent.mkdir(parents=True)
    local.write_bytes(b"mine")
    assert shipped.resolve(CKPT) == Path(CKPT)


def test_every_builtin_modality_lists_its_recipes_from_the_shipped_folder():
    for name in ("image", "text", "audio", "motion"):
        m = plugins.get(name)
        assert m.recipes_dir == shipped.recipes_dir(name)
        assert m.recipes() and all(r.suffix == ".yaml" and r.parent == m.recipes_dir for r in m.recipes())
    image = {r.name for r in plugins.get("image").recipes()}
    assert {"shapes_flow.yaml", "shapes_diffusion.yaml", "shapes_text_flow.yaml"} <= image


def _trimmed_copy(dest: Path) -> Path:
    """The packaging inputs, with the one checkpoint the install test loads (keeps the wheel small)."""
    keep = Path(CKPT).name

    def ignore(folder: str, names: list[str]) -> set[str]:
        heavy = {n for n in names if n.endswith((".ckpt", ".pt", ".npz")) and n != keep and
                 not n.endswith("feature_stats.npz")}  # modalities.motion's own package data stays
        return heavy | {n for n in names if n in ("__pycache__", "build", "lightning_logs")
                        or n.endswith(".egg-info")}

    src = dest / "polyguide"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for lic in ROOT.glob("LICEN[CS]E*"):
        shutil.copy2(lic, src / lic.name)
    for folder in ("framework", "modalities", "recipes"):
        shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    return src


def _pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"pip {args[0]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


PROBE = """
import contextlib, io, json, sys
from pathlib import Path
import framework
from framework.cli.main import main
from framework.core import plugins, shipped
from framework.training.module import load

site = Path(sys.argv[1]).resolve()
assert Path(framework.__file__).resolve().is_relative_to(site), framework.__file__
recipes = [str(r) for r in plugins.get("image").recipes()]
model = load("recipes/image/checkpoints/shapes_flow.ckpt")
out = model.sample({"shape": "circle", "color": "red"}, "cfg((shape, color), 2)", n=2, steps=2, seed=0)
listing = io.StringIO()
with contextlib.redirect_stdout(listing):
    assert main(["modalities"]) == 0
print(json.dumps({"root": str(shipped.root()), "recipes": recipes, "listing": listing.getvalue(),
                  "checkpoint": str(shipped.resolve("recipes/image/checkpoints/shapes_flow.ckpt")),
                  "media": list(out.media.shape)}))
"""


def test_a_wheel_install_lists_and_loads_the_shipped_recipes(tmp_path):
    src = _trimmed_copy(tmp_path)
    dist = tmp_path / "dist"
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "--no-cache-dir", "--quiet",
         "-w", str(dist), str(src))
    (wheel,) = dist.glob("polyguide-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for want in ("polyguide_recipes/__init__.py", "polyguide_recipes/image/shapes_flow.yaml",
                 "polyguide_recipes/image/shapes_text_flow.yaml", "polyguide_recipes/toy/points_flow.yaml",
                 "polyguide_recipes/text/shakespeare_ar.yaml", f"polyguide_{CKPT}",
                 "modalities/motion/feature_stats.npz", "framework/core/shipped.py"):
        assert want in names, f"the wheel lacks {want}"
    assert not any(n.startswith("recipes/") for n in names)  # only under the package name

    site = tmp_path / "site"
    _pip("install", "--no-deps", "--no-index", "--no-cache-dir", "--no-compile", "--quiet",
         "--target", str(site), str(wheel))
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()  # no recipes/ and no checkout on the path here
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", PROBE, str(site)], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    installed = site / "polyguide_recipes"
    assert Path(got["root"]) == installed
    assert str(installed / "image" / "shapes_flow.yaml") in got["recipes"]
    assert Path(got["checkpoint"]) == installed / "image" / "checkpoints" / "shapes_flow.ckpt"
    assert got["media"] == [2, 3, 16, 16]
    # `polyguide modalities` lists the installed recipes by a path that `polyguide fit --config` takes
    assert str(installed / "image" / "shapes_flow.yaml") in got["listing"]
