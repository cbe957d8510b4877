"""The byte-level BPE: exact round trips, cached training, determinism, the transformers wrapper."""

import os

import pytest

from modalities.text.corpus import load_speeches, split_by_play
from modalities.text.tokenizer import (
    EOS,
    PAD,
    load_tokenizer,
    resolve_tokenizer,
    save_tokenizer,
    to_transformers,
    train_bpe,
)

_, VAL = split_by_play(load_speeches())
LINES = ["Who's there?", "'Tis now struck twelve; get thee to bed, Francisco.",
         "To be, or not to be: that is the question:\nWhether 'tis nobler in the mind to suffer",
         "O, pardon! since a crooked figure may -- \"quoth he\" — & c. (ñ) ",
         "  leading spaces,\ttabs and trailing\n", ""]


@pytest.fixture(scope="module")
def tok(codec):
    return codec.tokenizer


def test_round_trip_is_exact_on_shakespeare(tok):
    texts = LINES + [s.text for s in VAL]  # the held-out plays: text the tokenizer never saw
    for text, enc in zip(texts, tok.encode_batch(texts, add_special_tokens=False), strict=True):
        assert tok.decode(enc.ids) == text
    assert tok.get_vocab_size() == 512
    assert (tok.token_to_id(PAD), tok.token_to_id(EOS)) == (0, 1)
    pieces = [p for p, _ in tok.pre_tokenizer.pre_tokenize_str("Who's there?")]
    assert pieces == ["Who", "'s", "Ġthere", "?"]  # GPT-2 splitting: "'s" is one piece


def test_named_tokenizer_is_cached_not_retrained(codec, text_cache, tokenizer_name):
    path = resolve_tokenizer(tokenizer_name, text_cache)
    assert path == text_cache / "shakespeare-bpe-512.json" and path == codec.path
    before = os.stat(path).st_mtime_ns
    assert resolve_tokenizer(tokenizer_name, text_cache) == path and os.stat(path).st_mtime_ns == before
    assert resolve_tokenizer(str(path)) == path  # a file path works as well
    with pytest.raises(FileNotFoundError, match="neither"):
        resolve_tokenizer(str(text_cache / "missing.json"))


def test_training_is_deterministic_and_save_load_round_trips(tmp_path):
    texts = [s.text for s in VAL[:600]]
    a, b = train_bpe(texts, 300), train_bpe(texts, 300)
    assert a.to_str() == b.to_str()
    loaded = load_tokenizer(save_tokenizer(a, tmp_path / "t.json"))
    assert loaded.to_str() == a.to_str() and not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError, match="needs ≥ 258"):
        train_bpe(texts, 100)


def test_transformers_wrapper_gives_the_same_ids(tok):
    fast = to_transformers(tok)
    for text in LINES[:-1]:
        assert fast(text, add_special_tokens=False)["input_ids"] == tok.encode(text).ids
        assert fast.decode(fast(text)["input_ids"]) == text
    assert (fast.pad_token_id, fast.eos_token_id, len(fast)) == (0, 1, 512)
    batch = fast(LINES[:2], padding=True, return_tensors="pt")
    assert batch["input_ids"].shape[0] == 2 and int(batch["input_ids"][0, -1]) == fast.pad_token_id
