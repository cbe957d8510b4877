"""GenerativeModel: the sampling half of GenerativeModule (no Lightning), its step defaults, and a
checkpoint that loads into either class."""

from __future__ import annotations

import warnings

import pytest
import torch

from framework.model.checkpoints import load_model
from framework.model.generative import GenerativeModel, default_steps
from framework.training.module import GenerativeModule

AR = dict(family="autoregressive", shape=[12], family_args={"vocab_size": 5},
          conditions=[{"name": "c", "labels": ["a", "b"]}], backbone={"dim": 16, "depth": 1, "heads": 2})


def test_default_steps_per_family():
    assert default_steps("autoregressive", (12,)) == 12 and default_steps("autoregressive", (4, 20)) == 20
    assert default_steps("masked", (12,)) == 12 and default_steps("masked", (64,)) == 30
    assert default_steps("flow", (8, 4)) == 30 and default_steps("diffusion", (8, 4)) == 30


def test_an_autoregressive_model_samples_its_whole_length_by_default():
    model = GenerativeModel(**AR)
    out = model.sample({"c": "a"}, "cond(c)", n=3, seed=0)
    assert out.samples.shape == (3, 12) and len(out.stats) == 12  # not 30, not truncated
    prompt = torch.tensor([[1, 2, 3]] * 3)
    assert model.sample({"c": "a"}, "cond(c)", n=3, seed=0, init=prompt).samples.shape == (3, 9)  # room left
    flow = GenerativeModel(family="flow", shape=[4, 3], conditions=AR["conditions"],
                           backbone={"dim": 16, "depth": 1, "heads": 2})
    assert len(flow.sample({"c": "a"}, "cond(c)", n=2, seed=0).stats) == 30


def test_val_steps_that_truncate_an_autoregressive_model_are_said_or_refused(fit_one_step_and_validate):
    with pytest.raises(ValueError, match="val_steps=13: this autoregressive model samples at most 12"):
        GenerativeModel(**AR, val_steps=13)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # building (e.g. loading an old checkpoint) stays quiet
        GenerativeModel(**AR, val_steps=5)
    from framework.toy.data import MixtureData

    dm = MixtureData(kind="tokens", n_train=16, n_val=8, batch_size=8, length=12)
    model = GenerativeModule(family="autoregressive", shape=[12], family_args={"vocab_size": dm.vocab_size},
                             conditions=[{"name": n, "labels": list(s.labels)} for n, s in dm.specs.items()],
                             backbone={"dim": 16, "depth": 1, "heads": 2},
                             val_guidance={"plain": "cond(shape, color)"}, val_samples=4, val_steps=5)
    with pytest.warns(UserWarning, match=r"val_steps=5: validation samples 5 of this autoregressive model's"):
        trainer = fit_one_step_and_validate(model, dm)
    assert float(trainer.callback_metrics["val/plain/nfe"]) == 5


def test_a_checkpoint_loads_into_either_class_with_the_same_weights_and_samples(tmp_path):
    torch.manual_seed(0)
    trained = GenerativeModule(**AR, guidance=["cfg(c, 2)"])
    assert isinstance(trained, GenerativeModel) and dict(trained.hparams)["family"] == "autoregressive"
    path = tmp_path / "m.ckpt"
    torch.save({"state_dict": trained.state_dict(), "hyper_parameters": dict(trained.hparams)}, path)
    light = load_model(path, cls=GenerativeModel)
    full = load_model(path, cls=GenerativeModule)
    assert type(light) is GenerativeModel and type(full) is GenerativeModule
    assert light.state_dict().keys() == trained.state_dict().keys()
    a = light.sample({"c": "b"}, n=4, seed=3)
    b = full.sample({"c": "b"}, n=4, seed=3)
    torch.testing.assert_close(a.samples, b.samples)
    assert a.nfe == b.nfe == 2 * 12  # the checkpoint's guidance, cfg: 2 branches per token


@pytest.mark.parametrize("family", ["autoregressive", "masked"])
def test_different_requests_with_one_seed_do_not_share_their_noise(family):
    """A fresh backbone ignores its conditions (adaLN-Zero), so a shared noise draw would give
    byte-identical samples for different requests; the seed is combined with the request."""
    from framework.model.generative import request_seed

    torch.manual_seed(0)
    model = GenerativeModel(**{**AR, "family": family})
    a = model.sample({"c": "a"}, "cond(c)", n=4, seed=7, steps=12).samples
    b = model.sample({"c": "b"}, "cond(c)", n=4, seed=7, steps=12).samples
    assert not torch.equal(a, b)
    assert torch.equal(a, model.sample({"c": "a"}, "cond(c)", n=4, seed=7, steps=12).samples)  # reproducible
    conds = model.conditions({"c": "a"}, 4)
    again = model.conditions({"c": "a"}, 4)
    assert request_seed(7, conds) == request_seed(7, again) != request_seed(8, conds)
    assert 0 <= request_seed(2**63 - 1, conds) < 2**63
