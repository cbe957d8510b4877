"""Training an image model logs guided accuracy at validation: the modality's judge scores samples
of each ``val_guidance`` expression (no data-module ``score`` needed)."""

import warnings

import torch

from framework.training.module import GenerativeModule
from modalities.image.data import ShapesData

warnings.filterwarnings("ignore", ".*does not have many workers.*")


def test_validation_logs_the_judges_accuracy_per_guidance(fit_one_step_and_validate):
    torch.manual_seed(0)
    dm = ShapesData(n_train=64, n_val=32, batch_size=32)
    model = GenerativeModule(family="flow", modality="image",
                             representation={"name": "patches", "size": 16, "channels": 3, "patch": 4},
                             conditions=[{"name": n, "labels": list(s.labels)} for n, s in dm.specs.items()],
                             backbone={"dim": 32, "depth": 1, "heads": 2},
                             guidance=["cfg((shape, color), 3)"],
                             val_guidance={"w1": "cond(shape, color, position)",
                                           "cfg3": "cfg((shape, color), 3)"},
                             val_samples=16, val_steps=2)
    trainer = fit_one_step_and_validate(model, dm)
    metrics = trainer.callback_metrics
    for label, nfe in (("w1", 2), ("cfg3", 4)):
        for name in ("acc_shape", "acc_color", "acc_position", "acc_all", "fd"):
            assert f"val/{label}/{name}" in metrics, sorted(metrics)
        assert 0 <= float(metrics[f"val/{label}/acc_shape"]) <= 1
        assert float(metrics[f"val/{label}/nfe"]) == nfe
