"""MusicGen / MusicGen-Melody through our autoregressive family: the codes of
``generate(guidance_scale=…)`` exactly (delay pattern included), and guidance ``generate`` lacks."""

import pytest
import torch
import transformers

from framework import pretrained
from framework.pretrained import PretrainedError

T, K = 6, 4  # frames, codebooks: generate needs max_new_tokens = T + K − 1


def _generate(folder, cls, texts, seed=0, **kwargs):
    """``generate``'s codes ``[B, K, T]`` (what it hands EnCodec) and audio."""
    model = getattr(transformers, cls).from_pretrained(folder).eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    seen = {}
    decode = model.audio_encoder.decode

    def record(codes, *a, **k):
        seen["codes"] = codes[0]
        return decode(codes, *a, **k)

    model.audio_encoder.decode = record
    torch.manual_seed(seed)  # generate samples with the global generator
    enc = tok(texts, padding=True, return_tensors="pt")
    audio = model.generate(**enc, max_new_tokens=T + K - 1, **kwargs)
    return seen["codes"], audio, model, tok


@pytest.mark.parametrize("folder", ["musicgen", "musicgen_sampling"])
def test_cfg_equals_generate(folder, request):
    path = request.getfixturevalue(folder)
    texts = ["happy piano", "sad drums loud"]  # different lengths: a padded batch
    codes, audio, *_ = _generate(path, "MusicgenForConditionalGeneration", texts, seed=5, guidance_scale=3.0)
    ours = pretrained.load(str(path))
    assert ours.family.temperature == (1.0 if folder == "musicgen_sampling" else 0.0)
    out = ours.sample({"text": texts}, "cfg(text, 3)", n=2, steps=T, seed=5)
    assert out.samples.shape == codes.shape == (2, K, T)
    assert torch.equal(out.samples, codes)
    assert torch.equal(out.media, audio)
    assert len(out.stats) == T + K - 1  # the delay pattern's extra steps
    other = ours.sample({"text": texts}, "cfg(text, 9)", n=2, steps=T, seed=5)
    assert not torch.equal(other.samples, codes)  # the comparison can tell weights apart


def _first_step_logprobs(model, guidance, raw):
    seen = []
    model.sample(raw, guidance, n=1, steps=1, seed=0, decode=False,
                 callback=lambda i, x, out: seen.append(torch.log_softmax(out.denoise[:, -1].float(), -1)))
    return seen[0]  # [1, K, V]


def _forward_logprobs(model, **inputs):
    start = torch.full((K, 1), model.generation_config.decoder_start_token_id)
    with torch.no_grad():
        logits = model(decoder_input_ids=start, **inputs).logits[:, -1]
    return torch.log_softmax(logits, -1)[None]  # [1, K, V]


def test_negative_text_on_musicgen(musicgen):
    ours = pretrained.load(str(musicgen))
    got = _first_step_logprobs(ours, "cond(negative_text) + 3*(cond(text) - cond(negative_text))",
                               {"text": "happy piano", "negative_text": "sad drums loud"})
    *_, model, tok = _generate(musicgen, "MusicgenForConditionalGeneration", ["happy piano"])
    pos = _forward_logprobs(model, **tok(["happy piano"], return_tensors="pt"))
    neg = _forward_logprobs(model, **tok(["sad drums loud"], return_tensors="pt"))
    want = torch.log_softmax(neg + 3 * (pos - neg), -1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    plain = _first_step_logprobs(ours, "cfg(text, 3)", {"text": "happy piano"})
    assert (plain - got).abs().max() > 1e-2


def test_melody_joint_equals_generate_and_independent_weights(musicgen_melody):
    chroma = torch.rand(1, 9, 12, generator=torch.Generator().manual_seed(1))
    codes, audio, model, tok = _generate(musicgen_melody, "MusicgenMelodyForConditionalGeneration",
                                         ["happy piano"], input_features=chroma, guidance_scale=3.0)
    ours = pretrained.load(str(musicgen_melody))
    raw = {"text": "happy piano", "melody": chroma[0]}
    out = ours.sample(raw, "joint([text, melody], 3)", n=1, steps=T, seed=0)
    assert torch.equal(out.samples, codes)
    assert torch.equal(out.media, audio)
    # text and melody weighted apart: u + 3(t − u) + 2(m − u), each branch as the model's forward builds it
    got = _first_step_logprobs(ours, "independent([text, melody], [3, 2])", raw)
    enc = tok(["happy piano"], return_tensors="pt")
    off = {"input_ids": enc["input_ids"], "attention_mask": torch.zeros_like(enc["attention_mask"])}
    u = _forward_logprobs(model, **off)
    t = _forward_logprobs(model, **enc)
    m = _forward_logprobs(model, **off, input_features=chroma)
    want = torch.log_softmax(u + 3 * (t - u) + 2 * (m - u), -1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    joint = _first_step_logprobs(ours, "joint([text, melody], 3)", raw)
    assert (joint - got).abs().max() > 1e-3  # 100× the tolerance above


def test_melody_as_audio_needs_the_feature_extractor_or_chroma(musicgen_melody, tmp_path):
    ours = pretrained.load(str(musicgen_melody))
    with pytest.raises(PretrainedError, match=r"chroma features have shape \[frames, 12\]"):
        ours.conditions({"melody": torch.zeros(5, 7)}, 1)
    import numpy as np

    np.save(tmp_path / "m.npy", np.random.default_rng(0).random((9, 12)).astype("float32"))
    c = ours.conditions({"melody": str(tmp_path / "m.npy")}, 2)
    assert c.values["melody"].shape[0] == 2 and bool(c.present["melody"].all())


def test_musicgen_refuses_conditions_it_cannot_take(musicgen):
    ours = pretrained.load(str(musicgen))
    with pytest.raises(PretrainedError, match="takes conditions text, negative_text; not 'melody'"):
        ours.sample({"melody": "x.npy"}, "cfg(melody, 3)", n=1, steps=2)
