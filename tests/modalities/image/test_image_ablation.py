"""recipes/image/ablation.py: one sampler change per row, restored afterwards; a change a family
cannot make is recorded as not run, and the markdown names every row. The scoring is replaced by
a recorder (what each row sampled with); the scores themselves are tested in test_image_reject."""

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

    loaded, seen = [], []
    real_load = training_module.load

    def spy(path):
        loaded.append(real_load(path))
        return loaded[-1]

    def scored(model, guidance, n, steps, seed, cache_dir, names):  # what the row sampled with
        seen.append((model.family.shift, steps, tuple(names), *guidance.values()))
        return [{"valid": 0.5, "acc_all": 1.0, "rule_valid": 0.25, "rule_acc_all": 0.75, "fd": 3.0,
                 "nfe": steps}]

    monkeypatch.setattr(ablation, "load", spy)
    monkeypatch.setattr(ablation, "evaluate", scored)
    done: dict = {}
    ckpt = ROOT / "recipes/image/checkpoints/shapes_flow.ckpt"
    rows = dict(ablation.ablate(ckpt, ["base", "shift3", "ddpm", "position"], n=4, seed=0, done=done,
                                base_steps=2))
    assert seen == [(1.0, 2, ("shape", "color"), "cond(shape, color)"),
                    (3.0, 2, ("shape", "color"), "cond(shape, color)"),  # the shift only in its row
                    (1.0, 2, ("shape", "color", "position"), "cond(shape, color, position)")]
    family = loaded[0].family
    assert family.shift == 1.0 and family.solver == "euler"  # the shift row's change was undone
    assert "error" in done["ddpm"] and "flow" in done["ddpm"]["error"]  # flow has no diffusers sampler
    assert set(rows) == {"base", "shift3", "position"} and done["base"]["rule_valid"] == 0.25
    table = ablation.markdown({"n": 4, "seed": 0, "models": {"flow": done}})
    assert "| unguided | 2 | 0.50 |" in table and "not run" in table and "sampling shift 3" in table
