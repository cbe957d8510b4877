"""A transformers GPT-2 as the autoregressive backbone: trained by our module, then decoded by our
engine and by transformers' own ``generate(guidance_scale=...)`` — the same tokens."""

import warnings

import lightning as L
import pytest
import torch

from framework.toy.data import MixtureData
from framework.training.module import GenerativeModule, load

warnings.filterwarnings("ignore", ".*does not have many workers.*")


@pytest.mark.parametrize("w", [1.0, 3.0])
def test_trained_gpt2_backbone_decodes_like_generate(w, tmp_path):
    torch.manual_seed(0)
    dm = MixtureData(kind="tokens", n_train=1024, n_val=128, batch_size=64, length=8)
    conds = [{"name": n, "labels": list(s.labels)} for n, s in dm.specs.items()]
    fargs = {"vocab_size": dm.vocab_size, "temperature": 0}
    model = GenerativeModule(family="autoregressive", family_args=fargs,
                             shape=[8], conditions=conds, guidance=["cfg((shape, color), 3)"],
                             backbone={"type": "gpt2", "n_layer": 1, "n_embd": 32, "n_head": 2}, lr=3e-3,
                             warmup_steps=5)
    before = model.val_loss(dm.val_dataloader())
    L.Trainer(max_steps=30, enable_progress_bar=False, logger=False, enable_model_summary=False,
              default_root_dir=tmp_path, limit_val_batches=0).fit(model, dm)
    assert model.val_loss(dm.val_dataloader()) < 0.95 * before
    model = load(str(next(tmp_path.rglob("*.ckpt"))))  # rebuilt from the checkpoint alone
    raw = {"shape": ["circle", "star"], "color": "green"}
    ours = model.sample(raw, f"cfg((shape, color), {w})", n=2, steps=8).samples
    adapter, lm = model.backbone, model.backbone.lm
    c = model.conditions(raw, 2)
    null = type(c)(dict(c.values), {k: torch.zeros(2, dtype=torch.bool) for k in c.present})
    bos = torch.full((2, 1), dm.vocab_size)
    cond_ids = torch.cat([adapter.prefix(c), bos], 1)
    uncond_ids = torch.cat([adapter.prefix(null), bos], 1)
    kwargs = {} if w == 1.0 else {"guidance_scale": w, "negative_prompt_ids": uncond_ids}
    with torch.no_grad():
        theirs = lm.generate(cond_ids, max_new_tokens=8, min_new_tokens=8, do_sample=False,
                             suppress_tokens=list(range(dm.vocab_size, lm.config.vocab_size)), **kwargs)
    assert torch.equal(ours, theirs[:, cond_ids.shape[1]:])
