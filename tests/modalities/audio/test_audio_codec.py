"""The ``codec`` representation (transformers' EncodecModel) and its training module."""

import json

import pytest
import torch
from transformers import EncodecConfig, EncodecModel

from framework.core import plugins
from modalities.audio.codec import STATS_FILE, EncodecCodec, rvq_decode, rvq_encode
from modalities.audio.codec_train import (
    CodecModule,
    kmeans,
    loud_crops,
    multiscale_mel_loss,
    save_codec,
)
from modalities.audio.features import limit_peak

TINY = dict(sampling_rate=16_000, audio_channels=1, num_filters=4, hidden_size=8, codebook_dim=8,
            upsampling_ratios=[5, 4], codebook_size=16, target_bandwidths=[6.4], num_lstm_layers=1,
            normalize=False, chunk_length_s=None, use_causal_conv=False)  # hop 20, 800 frames/s, 2 codebooks


def audio(n: int = 2, samples: int = 1600, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16_000
    f = 200 + 800 * torch.rand(n, 1, 1, generator=g)
    return 0.5 * torch.sin(2 * torch.pi * f * t) + 0.05 * torch.randn(n, 1, samples, generator=g)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny codec trained for three steps (so its codebooks are filled), saved with save_pretrained."""
    torch.manual_seed(0)
    module = CodecModule(config=TINY, crop=None, vq_warmup=0)
    opt = module.configure_optimizers()
    x = audio(4)
    for _ in range(3):
        loss = module._losses(x, update=True)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return save_codec(module.model, tmp_path_factory.mktemp("codec") / "codec", module.stats(x))


def test_saved_folder_reloads_with_from_pretrained(folder):
    assert (folder / "config.json").exists() and (folder / STATS_FILE).exists()
    stats = json.loads((folder / STATS_FILE).read_text())
    assert stats["codebooks"] == 2 and len(stats["mean"]) == 8 and stats["bitrate_bps"] == 2 * 800 * 4
    model = EncodecModel.from_pretrained(str(folder), local_files_only=True)
    assert model.config.codebook_size == 16 and len(model.quantizer.layers) == 2


def test_tokens_match_transformers_own_encode_and_decode(folder):
    codec = EncodecCodec(str(folder), samples=1600)
    x = audio(3, seed=1)
    codes = codec.encode(x)
    assert codec.shape == (2, 80) and codes.shape == (3, 2, 80) and codec.vocab_size == 16
    assert codes.dtype == torch.long and int(codes.max()) < 16
    # the oracle: the model's own inference path (transformers' EncodecModel.encode / decode)
    out = codec.model.encode(x, bandwidth=6.4, return_dict=True)
    assert torch.equal(out.audio_codes[0], codes)
    ref = codec.model.decode(out.audio_codes, out.audio_scales, return_dict=True).audio_values
    assert torch.allclose(codec.decode(codes), limit_peak(ref[..., :1600]), atol=1e-5)  # the level policy
    assert torch.equal(codec.encode(x), codes)  # deterministic


def test_layouts_decode_through_the_same_decoder(folder):
    x = audio(2, seed=2)
    tokens = EncodecCodec(str(folder), samples=1600)
    flat = EncodecCodec(str(folder), layout="flat", samples=1600)
    lat = EncodecCodec(str(folder), layout="latents", samples=1600)
    assert flat.shape == (160,) and lat.shape == (80, 8) and lat.vocab_size is None
    assert torch.equal(flat.encode(x).reshape(2, 2, 80), tokens.encode(x))
    z = lat.encode(x)
    assert abs(float(z.mean())) < 0.5 and 0.5 < float(z.std()) < 2  # standardised with the saved stats
    # quantised latents decode exactly as the codes of the same clip
    assert torch.allclose(lat.decode(z), tokens.decode(tokens.encode(x)), atol=1e-5)
    one = EncodecCodec(str(folder), codebooks=1, samples=1600)
    assert one.shape == (1, 80) and torch.equal(one.encode(x)[:, 0], tokens.encode(x)[:, 0])


def test_plugin_builds_the_codec_and_names_bad_arguments(folder, tmp_path):
    audio_plugin = plugins.get("audio")
    assert audio_plugin.codec("codec", path=str(folder), samples=1600).shape == (2, 80)
    with pytest.raises(plugins.PluginError, match="no codec at"):
        audio_plugin.codec("codec", path=str(tmp_path / "missing"))
    with pytest.raises(plugins.PluginError, match="layout must be one of"):
        audio_plugin.codec("codec", path=str(folder), layout="bits")
    with pytest.raises(plugins.PluginError, match=r"codebooks must be in 1\.\.2"):
        audio_plugin.codec("codec", path=str(folder), codebooks=3)
    with pytest.raises(plugins.PluginError, match="not a multiple of the codec's hop 20"):
        audio_plugin.codec("codec", path=str(folder), samples=1610)
    codec = EncodecCodec(str(folder), samples=1600)
    with pytest.raises(ValueError, match=r"integer ids in 0\.\.15"):
        codec.decode(torch.full((1, 2, 80), 16))
    with pytest.raises(ValueError, match=r"expected mono audio \[B, 1, 1600\]"):
        codec.encode(torch.zeros(1, 1, 800))


def test_training_quantiser_agrees_with_inference_and_learns():
    torch.manual_seed(0)
    module = CodecModule(config=TINY, crop=None, vq_warmup=0)
    x = audio(4)
    opt = module.configure_optimizers()
    first = None
    for _ in range(8):
        losses = module._losses(x, update=True)
        first = first if first is not None else float(losses["loss"])
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
    cb = module.model.quantizer.layers[0].codebook
    assert float(cb.cluster_size.sum()) > 0 and float(cb.embed.abs().sum()) > 0  # EMA-filled codebooks
    assert _check_codes(module, x)
    assert float(module._losses(x, update=False)["loss"]) < first
    codes = rvq_encode(module.model, module.model.encoder(x), 2)
    assert codes.shape == (4, 2, 80)
    assert module._crop(x).shape == x.shape
    assert CodecModule(config=TINY, crop=400)._crop(x).shape == (4, 1, 400)


def test_multiscale_mel_loss_is_zero_only_for_equal_audio():
    x = audio(2)
    assert float(multiscale_mel_loss(x[:, 0], x[:, 0], 16_000)) == 0
    half = multiscale_mel_loss(0.5 * x[:, 0], x[:, 0], 16_000, floor_db=-100)
    assert float(half) == pytest.approx(0.602, abs=0.005)  # half the amplitude: 6.02 dB less power
    # the linear term: |m(x/2) − m(x)| / mean m(x) = 3/4 at every scale
    both = multiscale_mel_loss(0.5 * x[:, 0], x[:, 0], 16_000, floor_db=-100, mag_weight=1.0)
    assert float(both) == pytest.approx(0.602 + 0.75, abs=0.01)
    quiet = (1e-4 * torch.randn(2, 1600, generator=torch.Generator().manual_seed(0))).requires_grad_()
    multiscale_mel_loss(quiet, x[:, 0], 16_000).backward()  # far below the −60-dB floor
    assert float(quiet.grad.abs().sum()) > 0  # a near-silent output (a fresh decoder) still learns


def test_loud_crops_cover_the_word_not_the_silence():
    clips = torch.zeros(64, 1, 16_000)
    onsets = torch.randint(0, 16_000 - 3200, (64,), generator=torch.Generator().manual_seed(0))
    for c, s in zip(clips, onsets.tolist(), strict=True):
        c[0, s:s + 3200] = 0.5 * torch.sin(torch.arange(3200) * 0.3)  # a 0.2-s "word" in silence
    crops = loud_crops(clips, 6400, 320, torch.Generator().manual_seed(1))
    assert crops.shape == (64, 1, 6400)
    kept = crops.square().sum((1, 2)) / clips.square().sum((1, 2))
    assert float(kept.min()) > 0 and float(kept.mean()) > 0.75  # uniform crops keep about 0.4
    assert torch.equal(loud_crops(torch.zeros(2, 1, 1600), 640, 320).abs().sum(), torch.tensor(0.0))


def test_kmeans_finds_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0]])
    points = (centres[:, None] + 0.1 * torch.randn(3, 50, 2, generator=g)).reshape(-1, 2)
    found, sizes = kmeans(points, 3, iters=10, generator=torch.Generator().manual_seed(3))
    match = torch.cdist(centres, found).min(-1).values
    assert float(match.max()) < 0.1 and sorted(sizes.tolist()) == [50.0, 50.0, 50.0]


def test_warmup_trains_an_autoencoder_then_initialises_distinct_codes():
    torch.manual_seed(0)
    module = CodecModule(config=TINY, crop=None, vq_warmup=2, reservoir=100)
    x = audio(4)
    for step in range(2):
        module.train_losses(x, step)["loss"].backward()
        assert not module.quantizer_ready  # the decoder read the latents, no codebook yet
    assert sum(len(r) for r in module._reservoir) >= 100
    out = module.train_losses(x, 2)
    assert module.quantizer_ready and float(out["commit"]) > 0
    for layer in module.model.quantizer.layers:  # k-means codes, not copies of one latent
        assert len(torch.unique(layer.codebook.embed, dim=0)) == 16
    codes = module(x)[1]
    assert len(torch.unique(codes[:, 0])) > 4  # frames use many codes (no collapse onto one)


def test_save_codec_replaces_a_folder_atomically(folder, tmp_path):
    model = EncodecModel(EncodecConfig(**TINY))
    dest = save_codec(model, tmp_path / "c", {"mean": [0.0] * 8, "std": [1.0] * 8})
    save_codec(model, dest, {"mean": [1.0] * 8, "std": [1.0] * 8})
    assert json.loads((dest / STATS_FILE).read_text())["mean"][0] == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temporary or old folders left


@pytest.mark.parametrize(("family", "layout", "args"), [
    ("autoregressive", "tokens", {"codebooks": 2}), ("masked", "flat", {}), ("flow", "latents", {})])
def test_every_family_trains_and_samples_on_the_codec(folder, family, layout, args):
    from framework.training.module import GenerativeModule

    model = GenerativeModule(family=family, family_args=args, modality="audio",
                             representation={"name": "codec", "path": str(folder), "layout": layout,
                                             "samples": 1600},
                             conditions=[{"name": "word", "labels": ["one", "two"]}],
                             backbone={"dim": 16, "depth": 1, "heads": 2}, guidance=["cfg(word, 2)"])
    batch = {"media": audio(2), "conditions": {"word": torch.tensor([0, 1])}}
    loss = model.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    steps = 80 if family == "autoregressive" else 2
    out = model.sample({"word": "two"}, n=1, steps=steps, seed=0)
    assert out.media.shape == (1, 1, 1600) and out.nfe == 2 * len(out.stats)


def _check_codes(module: CodecModule, audio: torch.Tensor) -> bool:
    """Whether the module's quantiser and the inference path (:func:`rvq_encode`) agree (tests)."""
    with torch.no_grad():
        z = module.model.encoder(audio)
        _, codes, _ = module._quantize(z, update=False)
        return torch.equal(codes, rvq_encode(module.model, z, module.codebooks)) and torch.allclose(
            rvq_decode(module.model, codes), module._quantize(z, update=False)[0], atol=1e-5)
