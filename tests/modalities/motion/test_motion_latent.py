"""The motion autoencoder on rotation features: the ``latent`` (flow) and ``tokens`` (masked) codecs."""

import numpy as np
import pytest
import torch

from modalities.motion.actions import generate_clip
from modalities.motion.codecs import Latent, Rotations, Tokens
from modalities.motion.physics import physics
from modalities.motion.vq import MotionVQ, load_vq, save_vq


@pytest.fixture(scope="module")
def vq_file(tmp_path_factory):
    torch.manual_seed(0)
    vq = MotionVQ(width=16, code_dim=8, codebook_size=16, features="rotations")
    vq.latent_mean.fill_(0.5)
    vq.latent_std.fill_(2.0)
    return save_vq(vq, tmp_path_factory.mktemp("vq") / "vq.pt")


@pytest.fixture(scope="module")
def clips():
    return torch.stack([generate_clip(np.random.default_rng(i)).positions for i in range(2)])


def test_latent_codec_shapes_statistics_and_rigid_bones(vq_file, clips):
    codec = Latent(str(vq_file), 64)
    assert codec.shape == (16, 8) and codec.vocab_size is None
    x = codec.encode(clips)
    assert x.shape == (2, 16, 8)
    vq = load_vq(vq_file)
    z = vq.latents(Rotations(64, 1).encode(clips))
    assert torch.allclose(x, (z - 0.5) / 2.0, atol=1e-5)  # normalised by the stored statistics
    noise = torch.randn(2, 16, 8, requires_grad=True)
    media = codec.decode(noise)  # whatever the generator outputs: a body with the skeleton's bones
    assert media.shape == (2, 64, 22, 3)
    assert physics(media)["bone_cv"] < 1e-4
    media.sum().backward()  # differentiable, for cost guidance
    assert noise.grad is not None and bool(noise.grad.abs().sum() > 0)
    assert codec.root_path(x).shape == (2, 64, 2)


def test_tokens_codec_on_rotation_features(vq_file, clips):
    codec = Tokens(str(vq_file), 64)
    ids = codec.encode(clips)
    assert ids.shape == (2, 16) and codec.vocab_size == 16
    assert physics(codec.decode(ids))["bone_cv"] < 1e-4


def test_lengths_that_the_autoencoder_cannot_code_are_refused(vq_file):
    with pytest.raises(ValueError, match="62 frames is not a multiple"):
        Latent(str(vq_file), 62)


def test_continuous_latents_train_the_decoder_too(clips):
    torch.manual_seed(0)
    vq = MotionVQ(width=16, code_dim=8, codebook_size=16, features="rotations")
    x = Rotations(64, 1).encode(clips)
    rec_codes, _, _ = vq(x, torch.tensor([False, False]))
    rec_cont, _, _ = vq(x, torch.tensor([True, True]))
    assert torch.allclose(rec_cont, vq.decode_latents(vq.latents(x)), atol=1e-5)
    assert not torch.allclose(rec_codes, rec_cont)


def test_an_older_tokenizer_without_latent_statistics_still_loads(tmp_path):
    vq = MotionVQ(width=16, code_dim=8, codebook_size=16)
    state = {k: v for k, v in vq.state_dict().items() if not k.startswith("latent_")}
    config = {k: v for k, v in vq.config.items() if k != "features"}
    torch.save({"config": config, "state_dict": state, "extra": {}}, tmp_path / "old.pt")
    again = load_vq(tmp_path / "old.pt")
    assert again.features == "features" and bool((again.latent_std == 1).all())
