"""Motion validation while training: held-out requests (caption, path, action belong together) and
the judge's scores of guided samples, logged as ``val/<label>/<metric>``."""

import warnings

import pytest
import torch

from framework.core.conditions import Conditions
from framework.training.module import GenerativeModule
from modalities.motion.actions import ACTIONS
from modalities.motion.data import MotionData
from modalities.motion.metrics import PHYSICS
from modalities.motion.trajectory import DIM

warnings.filterwarnings("ignore", ".*does not have many workers.*")

NAMES = ["text", "trajectory", "action"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # the shipped judge (recipes/motion/checkpoints/motion-judge.pt); 16 reference clips keep it quick
    return MotionData(conditions=NAMES, n_train=8, n_val=8, batch_size=8, sparse=0.5,
                      cache_dir=str(tmp_path_factory.mktemp("motion")), judge_reference=16)


def test_val_conditions_are_the_held_out_clips_own_requests(data):
    conds = data.val_conditions(6)
    _, values = data.split("val")
    assert set(conds.values) == set(NAMES) and conds.batch_size == 6
    for k in NAMES:
        assert torch.equal(conds.values[k], values[k][:6])
        assert bool(conds.present[k].all())
    with pytest.raises(ValueError, match=r"val_samples=9.*n_val=8"):
        data.val_conditions(9)


def test_score_judges_real_clips_as_real_and_mismatched_requests_as_wrong(data):
    media, _ = data.split("val")
    conds = data.val_conditions(8)
    real = data.score(media, conds)
    assert set(real) == {"acc_action", "r_precision_top1", "r_precision_top3", "traj_error", "fd",
                         "diversity", "foot_skating", *PHYSICS}  # 8 clips, 8 different requests
    assert real["traj_error"] < 1e-3  # each clip follows its own path (0 up to the error's 1e-4 floor)
    assert real["acc_action"] >= 0.75  # the judge is right on 100% of its 512 held-out clips
    # the same clips asked for the next clip's action and path: the judge must notice
    rolled = Conditions({k: torch.roll(v, 1, 0) for k, v in conds.values.items()})
    wrong = data.score(media, rolled)
    assert wrong["traj_error"] > 0.1 + real["traj_error"]
    same = bool((rolled.values["action"] == conds.values["action"]).all())
    assert wrong["acc_action"] < real["acc_action"] or same
    assert wrong["fd"] == pytest.approx(real["fd"])  # FD does not depend on what was asked


def test_a_tiny_fit_logs_the_judges_scores_per_guidance(data, fit_one_step_and_validate):
    torch.manual_seed(0)
    model = GenerativeModule(
        family="flow", modality="motion",
        representation={"name": "features", "frames": 64, "frames_per_token": 4},
        conditions=[{"name": "text", "kind": "vector", "dim": 384, "encoder": "minilm"},
                    {"name": "trajectory", "kind": "sequence", "dim": DIM, "encoder": "motion/trajectory"},
                    {"name": "action", "labels": list(ACTIONS)}],
        backbone={"dim": 32, "depth": 1, "heads": 2}, guidance=["cfg((text, trajectory, action), 2)"],
        val_guidance={"w1": "cond(text, trajectory, action)", "cfg2": "cfg((text, trajectory, action), 2)"},
        val_samples=8, val_steps=2)
    trainer = fit_one_step_and_validate(model, data)
    metrics = trainer.callback_metrics
    conds = data.val_conditions(8)
    for label, g, nfe in (("w1", "cond(text, trajectory, action)", 2),
                          ("cfg2", "cfg((text, trajectory, action), 2)", 4)):
        assert float(metrics[f"val/{label}/nfe"]) == nfe  # 2 steps × branches
        # the logged values are the judge's scores of these very samples (same weights, seed 0)
        want = data.score(model.sample(conds, g, steps=2, seed=0).media, conds)
        for name, value in want.items():
            assert float(metrics[f"val/{label}/{name}"]) == pytest.approx(value, rel=1e-5, abs=1e-6), name
        assert 0 <= want["acc_action"] <= 1 and want["traj_error"] > 0 and want["fd"] > 0
