"""recipes/image/ablation.py: one sampler change per row, restored afterwards; a change a family
cannot make is recorded as not run, and the markdown names every row."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("image_ablation", ROOT / "recipes/image/ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rows_change_one_thing_and_restore_it(ablation, monkeypatch):
    from framework.training import module as training_module

    loaded = []
    real_load = training_module.load

    def spy(path):
        loaded.append(real_load(path))
        return loaded[-1]

    monkeypatch.setattr(ablation, "load", spy)
    done: dict = {}
    ckpt = ROOT / "recipes/image/checkpoints/shapes_flow.ckpt"
    rows = dict(ablation.ablate(ckpt, ["base", "shift3", "ddpm"], n=4, seed=0, done=done, base_steps=2))
    family = loaded[0].family
    assert family.shift == 1.0 and family.solver == "euler"  # the shift row's change was undone
    assert "error" in done["ddpm"] and "flow" in done["ddpm"]["error"]  # flow has no diffusers sampler
    assert set(rows) == {"base", "shift3"}
    for key in ("base", "shift3"):
        assert 0.0 <= done[key]["valid"] <= 1.0 and done[key]["steps"] == 2 and done[key]["nfe"] == 2
    table = ablation.markdown({"n": 4, "seed": 0, "models": {"flow": done}})
    assert "| unguided | 2 |" in table and "not run" in table and "sampling shift 3" in table
