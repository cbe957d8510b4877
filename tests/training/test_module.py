"""The training module: every family trains, checkpoints restore, dropout follows guidance."""

import warnings

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging

from framework.core.conditions import ConditionError
from framework.toy.data import MixtureData
from framework.training.module import GenerativeModule, load

warnings.filterwarnings("ignore", ".*does not have many workers.*")
GUIDANCE = ["nested([shape, color], [2, 4])", "cfg((shape, color), 3)"]


def _module(family, fargs, shape, dm, **kw):
    conds = [{"name": n, "labels": list(s.labels)} for n, s in dm.specs.items()]
    return GenerativeModule(family=family, family_args=fargs, shape=shape, conditions=conds,
                            backbone={"dim": 32, "depth": 2, "heads": 2}, guidance=GUIDANCE, lr=3e-3,
                            warmup_steps=10, **kw)


def _trainer(steps, tmp_path=None, **kw):
    return L.Trainer(max_steps=steps, enable_progress_bar=False, logger=False, enable_model_summary=False,
                     enable_checkpointing=tmp_path is not None, default_root_dir=tmp_path,
                     num_sanity_val_steps=0, **kw)


def test_dropout_is_derived_from_the_guidance():
    dm = MixtureData(n_train=64, n_val=64)
    model = _module("flow", {}, [1, 2], dm)
    # nested needs (shape, ∅) and (∅, ∅); joint CFG needs (∅, ∅)
    assert set(model.dropout.joint) == {frozenset({"color"}), frozenset({"shape", "color"})}
    assert model.dropout.check(model.guidance[0], model.specs) == []


def test_explicit_dropout_that_misses_a_guidance_subset_is_refused():
    dm = MixtureData(n_train=64, n_val=64)
    with pytest.raises(ConditionError, match=r"never trained on: \{shape\} \(dropping color\)"):
        _module("flow", {}, [1, 2], dm, dropout={"shape+color": 0.2})


def test_checkpoint_alone_restores_the_ema_model(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    torch.manual_seed(0)
    dm = MixtureData(n_train=512, n_val=128, batch_size=64)
    model = _module("flow", {}, [1, 2], dm)
    ckpt_cb = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=30, save_top_k=-1)
    trainer = _trainer(30, tmp_path, limit_val_batches=0, callbacks=[EMAWeightAveraging(decay=0.9), ckpt_cb])
    trainer.fit(model, dm)
    (path,) = tmp_path.glob("*.ckpt")
    ckpt = torch.load(path, weights_only=False)
    ema, raw = ckpt["state_dict"], ckpt["current_model_state"]  # saved mid-fit: both are there
    assert any(not torch.equal(ema[k], raw[k]) for k in ema)
    restored = load(str(path))
    assert not restored.training and restored.hparams.guidance == GUIDANCE
    for k, v in restored.state_dict().items():
        torch.testing.assert_close(v, ema[k])
    for k, v in model.state_dict().items():  # after fit, the module itself holds the EMA weights
        torch.testing.assert_close(v, ema[k])
    a = model.sample({"shape": "square", "color": "red"}, n=8, steps=5, seed=0).samples
    b = restored.sample({"shape": "square", "color": "red"}, n=8, steps=5, seed=0).samples
    torch.testing.assert_close(a, b)


def test_sample_errors_name_the_problem():
    dm = MixtureData(n_train=64, n_val=64)
    model = _module("flow", {}, [1, 2], dm)
    with pytest.raises(ConditionError, match="unknown condition 'colour' — did you mean 'color'"):
        model.sample({"colour": "red"}, n=2, steps=2)
    with pytest.raises(ConditionError, match="unknown value for condition 'color': 'purple'"):
        model.sample({"color": "purple"}, n=2, steps=2)
    with pytest.raises(ValueError, match="unknown family 'gan'"):
        GenerativeModule(family="gan")


def test_validation_scores_guided_samples():
    torch.manual_seed(0)
    dm = MixtureData(n_train=512, n_val=128, batch_size=128)
    model = _module("flow", {}, [1, 2], dm, val_guidance={"cfg": "cfg((shape, color), 3)"}, val_samples=64,
                    val_steps=4)
    trainer = _trainer(4, limit_val_batches=1, val_check_interval=4)
    trainer.fit(model, dm)
    metrics = trainer.callback_metrics
    assert {"val/loss", "val/cfg/acc_both", "val/cfg/nfe"} <= set(metrics)
    assert float(metrics["val/cfg/nfe"]) == 8.0  # 4 steps × 2 branches
