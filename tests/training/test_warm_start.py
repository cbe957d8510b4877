"""WarmStart: a masked model starts from an autoregressive model's backbone weights."""

from types import SimpleNamespace

import lightning as L
import pytest
import torch

from framework.training.module import GenerativeModule
from framework.training.warm_start import WarmStart

COMMON = dict(shape=[12], family_args={"vocab_size": 7}, conditions=[{"name": "c", "labels": ["a", "b"]}],
              backbone={"dim": 16, "depth": 1, "heads": 2})


def _save(model, path):
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": L.__version__}, path)
    return path


def test_the_masked_model_starts_as_the_autoregressive_one(tmp_path):
    torch.manual_seed(0)
    ar = GenerativeModule(family="autoregressive", **COMMON)
    path = _save(ar, tmp_path / "ar.ckpt")
    masked = GenerativeModule(family="masked", **COMMON)
    before = {k: v.clone() for k, v in masked.backbone.state_dict().items()}
    cb = WarmStart(path)
    cb.setup(SimpleNamespace(ckpt_path=None), masked, "fit")
    src, got = ar.backbone.state_dict(), masked.backbone.state_dict()
    assert src["pos"].shape[0] == got["pos"].shape[0] + 1  # the AR model's BOS position
    torch.testing.assert_close(got["pos"], src["pos"][1:])  # token j keeps position j's embedding
    for name in got:
        if name.startswith("time_mlp."):
            assert name not in cb.copied
        else:
            want = src[name] if name != "pos" else src["pos"][1:]
            assert name in cb.copied and torch.equal(got[name], want)
    assert torch.equal(got["time_mlp.2.weight"], torch.zeros_like(before["time_mlp.2.weight"]))
    assert torch.equal(got["time_mlp.0.weight"], before["time_mlp.0.weight"])  # kept its initialisation
    # with the time input a no-op, the masked network reads a sequence as the AR one does
    x = torch.randint(0, 7, (3, 12))
    conds = masked.conditions({"c": "a"}, 3)
    ar.backbone.cfg.causal = False  # compare the same (bidirectional) computation
    for blk in ar.backbone.blocks:
        blk.causal = False
    want = ar.backbone(torch.cat([torch.full((3, 1), 7), x], 1), None, conds)[:, 1:]
    torch.testing.assert_close(masked.backbone(x, torch.rand(3), conds), want)


def test_nothing_is_copied_when_resuming_or_when_nothing_fits(tmp_path):
    torch.manual_seed(0)
    path = _save(GenerativeModule(family="autoregressive", **COMMON), tmp_path / "ar.ckpt")
    masked = GenerativeModule(family="masked", **COMMON)
    before = {k: v.clone() for k, v in masked.backbone.state_dict().items()}
    WarmStart(path).setup(SimpleNamespace(ckpt_path="last.ckpt"), masked, "fit")
    assert all(torch.equal(v, before[k]) for k, v in masked.backbone.state_dict().items())
    other = GenerativeModule(family="masked", **{**COMMON, "backbone": {"dim": 8, "depth": 1, "heads": 2}})
    with pytest.raises(ValueError, match=r"architecture: pos \(13, 16\) vs \(12, 8\); embed_in.weight"):
        WarmStart(path).setup(SimpleNamespace(ckpt_path=None), other, "fit")
