"""The import-layer contract (tools/import_graph.py): layers that match the tree, no modality
importing another, zero import circles, and docs/architecture.md's diagram generated from the
imports as they are."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
ig = importlib.util.module_from_spec(_spec)
sys.modules["import_graph"] = ig
_spec.loader.exec_module(ig)


@pytest.fixture(scope="module")
def edges():
    return ig.graph()


def test_every_module_belongs_to_a_layer(edges):
    assert len(edges) > 100
    assert [m for m in edges if ig.layer_of(m) is None] == []


def test_no_import_breaks_the_layers(edges):
    assert ig.violations(edges) == []


def test_there_is_no_import_circle(edges):
    assert ig.circles(edges) == []


def test_the_command_passes_on_the_tree(edges, capsys, monkeypatch):
    """``python tools/import_graph.py`` (what a contributor runs) exits 0 and says so."""
    monkeypatch.setattr(ig, "graph", lambda: edges)
    assert ig.main([]) == 0
    assert capsys.readouterr().out.rstrip().endswith("0 layer violations, 0 circles")


def test_a_modality_reaches_another_through_its_shared_api():
    """The dance code (motion) uses audio's music renderer by name, not by import."""
    from framework.core import plugins
    from modalities.audio import music

    assert plugins.api("audio/render") is music.render
    shared = plugins.get("audio").api
    assert {"render", "music_features", "estimate_beats", "sample_rate"} <= set(shared)
    assert all(plugins.api(f"audio/{name}") is not None for name in shared)  # every target imports
    with pytest.raises(plugins.PluginError, match=r"shares no 'nope'; it shares .*'render'"):
        plugins.api("audio/nope")
    with pytest.raises(plugins.PluginError, match="not of the form"):
        plugins.api("render")


def test_the_architecture_diagram_is_the_one_the_imports_give(edges):
    doc = (ROOT / "docs" / "architecture.md").read_text()
    assert f"```mermaid\n{ig.diagram(edges)}```" in doc, (
        "docs/architecture.md is out of step with the imports: paste `python tools/import_graph.py "
        "--diagram`")


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checks_catch_circles_upward_imports_and_modality_pairs(tmp_path):
    """The contract can fail: a small tree with one fault of each kind, every form of import."""
    _tree(tmp_path, {
        "framework/__init__.py": "",
        "framework/core/__init__.py": "",
        "framework/core/a.py": "def f():\n    from framework.cli import b\n",  # lazy, upward
        "framework/cli/__init__.py": "",
        "framework/cli/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from framework.cli.c import X\n",
        "framework/cli/c.py": "from . import b\nX = 1\n",  # relative: b ↔ c
        "framework/guidance/__init__.py": "import framework.core.a\n",  # downward: fine
        "modalities/__init__.py": "",
        "modalities/image/__init__.py": "",
        "modalities/image/m.py": "from modalities.audio.n import Y\n",
        "modalities/audio/__init__.py": "",
        "modalities/audio/n.py": "Y = 2\n",
        "framework/cli/d.py": "from modalities.image import m\n",  # the CLI past the registry
    })
    edges = ig.graph(tmp_path)
    assert edges["framework.guidance"] == {"framework.core.a"}
    assert ig.circles(edges) == [["framework.cli.b", "framework.cli.c"]]
    bad = ig.violations(edges)
    assert any(line.startswith("framework.core.a → framework.cli.b: layer core") for line in bad)
    assert any("modalities.image.m → modalities.audio.n: a modality imports another" in line for line in bad)
    assert any(line.startswith("framework.cli.d → modalities.image.m: layer cli reaches") for line in bad)
    assert len(bad) == 3
