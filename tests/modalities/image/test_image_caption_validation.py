"""Text→image validation while training: held-out paraphrases as requests, and the image judge's
scores on the attributes each caption names, logged as ``val/<label>/<metric>``."""

import warnings
from pathlib import Path

import pytest
import torch

from framework.core.conditions import Conditions
from framework.core.encoders import minilm
from framework.training.module import GenerativeModule
from modalities.image.captions import HELD_OUT, CaptionedShapesData, evaluation_captions
from modalities.image.data import shapes_specs
from modalities.image.judges import judge_heads
from modalities.image.metrics import ImageJudge
from modalities.image.shapes import render

warnings.filterwarnings("ignore", ".*does not have many workers.*")

SHIPPED = Path(__file__).resolve().parents[3] / "recipes/image/checkpoints/classifier-shapes16.pt"


@pytest.fixture(scope="module")
def data():
    dm = CaptionedShapesData(n_train=32, n_val=32, batch_size=32)
    # the shipped classifier with 64 reference images instead of the judge's 1,000 (speed)
    b = render(64, 16, torch.Generator().manual_seed(5))
    ref = (b.images, {"shape": b.shape, "color": b.color, "position": b.position})
    dm._judge = ImageJudge(ref, ref, judge_heads(shapes_specs(), 16)[0], SHIPPED)
    return dm


def test_val_conditions_are_held_out_paraphrases_with_what_each_asks_for(data):
    conds = data.val_conditions(12)
    caps = evaluation_captions(HELD_OUT, seed=2, n=12)
    torch.testing.assert_close(conds.values["text"], minilm([c.text for c in caps]))
    for k in ("shape", "color"):
        assert conds.values[k].tolist() == [c.requested[k] for c in caps]
    named = [c for c, p in zip(caps, conds.present["position"], strict=True) if p]
    assert conds.present["position"].tolist() == ["position" in c.requested for c in caps]
    assert 0 < len(named) < 12 and all("position" in c.requested for c in named)


def test_score_is_right_for_images_with_the_asked_attributes_and_wrong_otherwise(data):
    conds = data.val_conditions(16)
    v = conds.values
    right = render(16, 16, torch.Generator().manual_seed(0), shape=v["shape"], color=v["color"],
                   position=v["position"]).images
    got = data.score(right, conds)
    assert set(got) == {"acc_shape", "acc_color", "acc_shape_color", "acc_position", "fd", "diversity"}
    assert got["acc_shape"] >= 0.9 and got["acc_color"] >= 0.9 and got["acc_position"] >= 0.9
    other = Conditions({"text": v["text"], "shape": (v["shape"] + 1) % 4, "color": (v["color"] + 1) % 6,
                        "position": (v["position"] + 1) % 4}, conds.present)
    wrong = data.score(right, other)  # the same images asked for another shape, colour and position
    assert wrong["acc_shape"] <= 0.1 and wrong["acc_color"] <= 0.1 and wrong["acc_position"] <= 0.1


def test_a_tiny_text_to_image_fit_logs_the_judges_scores(data, fit_one_step_and_validate):
    torch.manual_seed(0)
    model = GenerativeModule(family="flow", modality="image",
                             representation={"name": "patches", "size": 16, "channels": 3, "patch": 4},
                             conditions=[{"name": "text", "kind": "vector", "dim": 384, "encoder": "minilm"}],
                             backbone={"dim": 32, "depth": 1, "heads": 2}, guidance=["cfg(text, 3)"],
                             val_guidance={"cfg3": "cfg(text, 3)"}, val_samples=16, val_steps=2)
    trainer = fit_one_step_and_validate(model, data)
    metrics = trainer.callback_metrics
    assert float(metrics["val/cfg3/nfe"]) == 4  # 2 steps × 2 branches
    conds = data.val_conditions(16)
    want = data.score(model.sample(conds, "cfg(text, 3)", steps=2, seed=0).media, conds)
    for name, value in want.items():  # the logged values are the judge's scores of these samples
        assert float(metrics[f"val/cfg3/{name}"]) == pytest.approx(value, rel=1e-5, abs=1e-6), name
