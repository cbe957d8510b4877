"""The BPE codec: UTF-8 byte media ↔ padded token ids, end tokens, truncation, prompts."""

import copy
import pickle

import pytest
import torch

from modalities.text import TextModality
from modalities.text.codecs import BPETokens, media_to_texts, texts_to_media

TEXTS = ["Who's there?", "Nay, answer me: stand,\nand unfold yourself.", "", "’Tis ñ — & c."]


def test_media_are_utf8_bytes():
    media = texts_to_media(TEXTS)
    assert media.dtype == torch.uint8 and media.shape == (4, max(len(t.encode()) for t in TEXTS))
    assert media_to_texts(media) == TEXTS and media_to_texts(TEXTS) == TEXTS
    assert texts_to_media(TEXTS, width=50).shape == (4, 50)
    with pytest.raises(ValueError, match="does not fit"):
        texts_to_media(TEXTS, width=5)
    assert media_to_texts(torch.tensor([[0xE2, 0x80, 65, 0]], dtype=torch.uint8)) == ["\ufffdA"]


def test_codec_shapes_padding_and_round_trip(codec):
    assert codec.shape == (32,) and codec.vocab_size == 512 and (codec.pad_id, codec.eos_id) == (0, 1)
    ids = codec.encode(texts_to_media(TEXTS))
    assert ids.shape == (4, 32) and ids.dtype == torch.long
    n = [len(codec.tokenizer.encode(t).ids) for t in TEXTS]
    for row, k in zip(ids, n, strict=True):
        assert (row[:k] >= 2).all() and row[k] == codec.eos_id and (row[k + 1:] == codec.pad_id).all()
    assert media_to_texts(codec.decode(ids)) == TEXTS
    assert torch.equal(codec.encode(codec.decode(ids)), ids)


def test_long_texts_are_cut_before_the_end_token(codec):
    long = " ".join(["Tomorrow, and tomorrow, and tomorrow,"] * 20)
    ids = codec.encode_texts([long])
    assert ids[0, -1] == codec.eos_id and (ids[0, :-1] >= 2).all()
    assert long.startswith(codec.decode_text(ids)[0])
    no_eos = codec.encode_texts([long], eos=False)
    assert (no_eos[0] >= 2).all() and torch.equal(no_eos[0, :31], ids[0, :31])


def test_decoding_stops_at_the_first_special_token(codec):
    ids = codec.encode_texts(["Good night, sweet prince"])
    k = int((ids[0] >= 2).sum())
    ids[0, k + 1:] = ids[0, :31 - k].clone()  # text after the end token (a sampler without eos_id) is dropped
    assert codec.decode_text(ids) == ["Good night, sweet prince"]
    with pytest.raises(ValueError, match="token ids must be in"):
        codec.decode_text(torch.full((1, 32), 512))


def test_prompt_and_input_checks(codec, tokenizer_name):
    p = codec.prompt("To be, or not to be", n=3)
    assert p.shape[0] == 3 and codec.tokenizer.decode(p[0].tolist()) == "To be, or not to be"
    with pytest.raises(ValueError, match="prompt needs"):
        codec.prompt("")
    with pytest.raises(ValueError, match=r"UTF-8 bytes \[B, M\] uint8"):
        codec.encode(torch.zeros(2, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="length must be"):
        BPETokens(tokenizer_name, length=1, cache_dir=str(codec.path.parent))


def test_codec_copies_and_pickles_like_model_attributes(codec):
    # EMA weight averaging deep-copies the LightningModule, codec included
    for clone in (copy.deepcopy(codec), pickle.loads(pickle.dumps(codec))):
        assert torch.equal(clone.encode_texts(TEXTS), codec.encode_texts(TEXTS))


def test_plugin_builds_the_codec(codec, tokenizer_name):
    built = TextModality().codec("bpe", tokenizer=tokenizer_name, length=16, cache_dir=str(codec.path.parent))
    assert built.shape == (16,) and built.vocab_size == 512
