"""Resuming from a checkpoint at step k reaches bit-identical weights to an uninterrupted run (CPU).

The runs cross epoch boundaries (4 batches per epoch, 8 samples dropped), validate every 3 steps
(validation must not move training's random streams), and keep an EMA; the uninterrupted run saves a
checkpoint at every step, and each case resumes from its step-k checkpoint into a fresh directory.
"""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging

from framework.model.checkpoints import read_checkpoint
from framework.toy.data import MixtureData
from framework.training.checkpoint_io import ModelCheckpoint
from framework.training.module import GenerativeModule

N = 7  # total steps
FAMILIES = {"flow": ({}, [1, 2], "points"), "masked": ({"vocab_size": 12}, [8], "tokens")}


def _fit(tmp, family, ckpt_path=None):
    fargs, shape, kind = FAMILIES[family]
    L.seed_everything(0, verbose=False)
    dm = MixtureData(kind=kind, n_train=72, n_val=16, batch_size=16, length=8)
    model = GenerativeModule(family=family, family_args=fargs, shape=shape,
                             conditions=[{"name": n, "labels": list(s.labels)} for n, s in dm.specs.items()],
                             backbone={"dim": 16, "depth": 1, "heads": 2},
                             guidance=["nested([shape, color], [2, 4])"], lr=3e-3, warmup_steps=5)
    trainer = L.Trainer(max_steps=N, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp, val_check_interval=3, check_val_every_n_epoch=None,
                        limit_val_batches=1, num_sanity_val_steps=1,
                        callbacks=[EMAWeightAveraging(decay=0.9),
                                   ModelCheckpoint(dirpath=tmp, every_n_train_steps=1, save_top_k=-1,
                                                   save_last=True)])
    trainer.fit(model, dm, ckpt_path=ckpt_path)
    return model, read_checkpoint(tmp / "last.ckpt")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    runs = {}

    def run(family):
        if family not in runs:
            tmp = tmp_path_factory.mktemp(f"straight-{family}")
            runs[family] = (tmp, *_fit(tmp, family))
        return runs[family]
    return run


@pytest.mark.fault("resume")
@pytest.mark.parametrize(("family", "k"), [("flow", 3), ("flow", 4), ("masked", 5)],
                         ids=["flow-k3-before-validation", "flow-k4-epoch-end", "masked-k5-mid-epoch"])
def test_resume_from_step_k_is_bit_identical(tmp_path, uninterrupted, family, k):
    straight, ref_model, ref = uninterrupted(family)
    (step_k,) = straight.glob(f"*step={k}.ckpt")
    model, resumed = _fit(tmp_path, family, ckpt_path=step_k)
    assert resumed["global_step"] == ref["global_step"] == N
    for name in ("state_dict", "current_model_state"):  # EMA and raw weights
        assert [p for p in ref[name] if not torch.equal(ref[name][p], resumed[name][p])] == [], name
    for (n, a), (_, b) in zip(ref_model.named_parameters(), model.named_parameters(), strict=True):
        assert torch.equal(a, b), n
    ref_opt, opt = ref["optimizer_states"][0]["state"], resumed["optimizer_states"][0]["state"]
    assert ref_opt.keys() == opt.keys()
    assert all(torch.equal(s[x], opt[i][x]) for i, s in ref_opt.items() for x in s)
    assert ref["lr_schedulers"] == resumed["lr_schedulers"]
    assert ref["rng_states"]["torch"].equal(resumed["rng_states"]["torch"])
