"""The four built-in modalities pass the plugin contract suite (``framework.testing``) that any
plugin runs against itself: each class below is that suite on a small copy of a shipped recipe.

Two checks run differently here, to keep the suite fast: ``sampling_without_lightning`` runs for
all four in one fresh interpreter (:func:`test_sampling_imports_no_lightning`), and ``judge``
is left out: the built-in judges build their reference data when constructed (the image judge
renders 9,000 shapes, the audio words judge 500 clips and speaker embeddings: minutes), and
``tests/cli/test_eval_judge.py`` and the modalities' own tests cover them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.testing import ModalityContract, PluginCase
from framework.testing.isolation import lightning_imports

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


class _Builtin(ModalityContract):
    test_judge = None  # see the module docstring
    test_sampling_without_lightning = None  # all four at once below


class TestImageContract(_Builtin):
    case = PluginCase.from_recipe(RECIPES / "image" / "shapes_flow.yaml",
                                  data_args={"n_train": 16, "n_val": 8, "batch_size": 8}, roundtrip_atol=1e-6)


class TestAudioContract(_Builtin):
    case = PluginCase.from_recipe(RECIPES / "audio" / "words_flow.yaml",
                                  data_args={"n_train": 8, "n_val": 4, "batch_size": 4})


class TestMotionContract(_Builtin):
    case = PluginCase.from_recipe(RECIPES / "motion" / "motion_flow.yaml",
                                  data_args={"n_train": 8, "n_val": 4, "batch_size": 4})


class TestTextContract(_Builtin):
    case = PluginCase.from_recipe(RECIPES / "text" / "shakespeare_masked.yaml", data_args={"batch_size": 4},
                                  ragged_media=True)


@pytest.fixture(scope="module")
def imported() -> dict[str, list[str]]:
    """Lightning modules imported after sampling each built-in, all four in one fresh interpreter
    (audio last: the imports accumulate)."""
    classes = (TestImageContract, TestMotionContract, TestTextContract, TestAudioContract)
    return lightning_imports([c.contract() for c in classes])


@pytest.mark.parametrize("name", ["image", "motion", "text", "audio"])
def test_sampling_imports_no_lightning(imported, name):
    """Getting the plugin, building its model, sampling and writing import no Lightning."""
    assert imported[name] == [], f"sampling {name} imported {imported[name][:3]}"
