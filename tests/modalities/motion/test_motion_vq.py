"""The motion VQ-VAE: shapes, determinism, a few training steps, save/load with weights_only."""

import numpy as np
import pytest
import torch

from modalities.motion.actions import generate_clip
from modalities.motion.codecs import Features
from modalities.motion.features import DIM
from modalities.motion.vq import MotionVQ, load_vq, save_vq


def _feats(n=8):
    pos = torch.stack([generate_clip(np.random.default_rng(i)).positions for i in range(n)])
    return Features(64, 1).encode(pos)


def test_shapes_and_determinism(tmp_path):
    torch.manual_seed(0)
    vq = MotionVQ(width=32, code_dim=16, codebook_size=32, downsample=4).eval()
    x = _feats(4)
    ids = vq.encode(x)
    assert ids.shape == (4, 16) and ids.dtype == torch.long and 0 <= int(ids.min()) and int(ids.max()) < 32
    assert torch.equal(ids, vq.encode(x))
    rec = vq.decode(ids)
    assert rec.shape == (4, 64, DIM)
    path = save_vq(vq, tmp_path / "vq.pt")
    again = load_vq(path)
    assert torch.equal(again.encode(x), ids) and torch.allclose(again.decode(ids), rec)
    with pytest.raises(ValueError, match=r"token ids must lie in 0\.\.31"):
        vq.decode(torch.full((1, 16), 32))


def test_a_few_steps_reduce_the_reconstruction_error():
    torch.manual_seed(0)
    vq = MotionVQ(width=32, code_dim=16, codebook_size=32, downsample=4)
    x = _feats(8)
    opt = torch.optim.AdamW(vq.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        rec, commit, _ = vq(x)
        loss = torch.nn.functional.mse_loss(rec, x) + 0.02 * commit
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]


def test_missing_or_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="train it with"):
        load_vq(tmp_path / "nope.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a motion tokenizer"):
        load_vq(tmp_path / "other.pt")
