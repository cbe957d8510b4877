"""A byte-level BPE tokenizer for the Shakespeare text, trained with the ``tokenizers`` package.

Byte-level (GPT-2 style): every string is encodable (no unknown token) and decoding inverts
encoding exactly, apostrophes, dashes and line breaks included. Two special tokens come first:
``<|pad|>`` (id 0) fills a window after its text, ``<|endoftext|>`` (id 1) ends the text.

Training takes a couple of seconds and is deterministic (same texts → same JSON file), so a
tokenizer named ``shakespeare-<vocab>`` is trained on first use from the training plays
(:data:`~modalities.text.corpus.VAL_PLAYS` excluded) and cached as a JSON file; a checkpoint that
names it rebuilds the same tokenizer on another machine.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from framework.core.atomic import atomic_write

from .corpus import load_speeches, split_by_play

__all__ = ["DEFAULT_CACHE", "EOS", "PAD", "SPECIAL_TOKENS", "load_tokenizer", "resolve_tokenizer",
           "save_tokenizer", "to_transformers", "train_bpe"]

PAD, EOS = "<|pad|>", "<|endoftext|>"
SPECIAL_TOKENS = (PAD, EOS)  # ids 0 and 1
DEFAULT_CACHE = Path("~/.cache/polyguide/text")
_NAMED = re.compile(r"^shakespeare-(?P<vocab>\d+)$")


def train_bpe(texts: Iterable[str], vocab_size: int = 2048, min_frequency: int = 2) -> Tokenizer:
    """A byte-level BPE with :data:`SPECIAL_TOKENS` trained on ``texts`` (``vocab_size`` includes
    the 256 byte tokens and the special tokens)."""
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"a byte-level vocabulary needs ≥ {256 + len(SPECIAL_TOKENS)} tokens, "
                         f"got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # no prefix space: exact round trip
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # all 256 bytes
    tok.train_from_iterator(texts, trainer)
    return tok


def save_tokenizer(tok: Tokenizer, path: Path | str) -> Path:
    """Write ``tok`` as JSON atomically (temporary file, then rename): readers never see half a file."""
    return atomic_write(path, lambda tmp: tmp.write_text(tok.to_str(), encoding="utf-8"))


def load_tokenizer(path: Path | str) -> Tokenizer:
    """Read a tokenizer JSON file; it must have :data:`SPECIAL_TOKENS` as ids 0 and 1.

    Raises:
        ValueError: the file is not a tokenizer JSON file (the ``tokenizers`` library's message).
    """
    try:
        tok = Tokenizer.from_file(str(Path(path).expanduser()))
    except Exception as e:  # tokenizers raises its own Exception for any malformed file
        if isinstance(e, OSError):
            raise
        text = " ".join(str(e).split())[:200]
        raise ValueError(f"tokenizer file {path} is not a tokenizer ({text})") from None
    ids = [tok.token_to_id(t) for t in SPECIAL_TOKENS]
    if ids != list(range(len(SPECIAL_TOKENS))):
        raise ValueError(f"{path}: special tokens {SPECIAL_TOKENS} must be ids 0, 1; got {ids}")
    return tok


def check_tokenizer(spec: str) -> None:
    """Refuse at once a tokenizer ``spec`` that is a path to no file (a named one is built on first use).

    Raises:
        FileNotFoundError: naming ``spec``.
    """
    if _NAMED.match(spec) is None:
        resolve_tokenizer(spec)


def resolve_tokenizer(spec: str, cache_dir: Path | str | None = None) -> Path:
    """The JSON file of a tokenizer: ``"shakespeare-<vocab>"`` (trained on first use and cached as
    ``<cache_dir>/shakespeare-bpe-<vocab>.json``; default cache ``~/.cache/polyguide/text``) or a
    path to a tokenizer JSON file, which must exist."""
    m = _NAMED.match(spec)
    if m is None:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer {spec!r} is neither 'shakespeare-<vocab>' nor an "
                                    f"existing file")
        return path
    vocab = int(m["vocab"])
    path = Path(cache_dir or DEFAULT_CACHE).expanduser() / f"shakespeare-bpe-{vocab}.json"
    if not path.exists():
        train, _ = split_by_play(load_speeches())
        save_tokenizer(train_bpe((s.text for s in train), vocab), path)
    return path


def to_transformers(tok: Tokenizer) -> Any:
    """``tok`` as a ``transformers.PreTrainedTokenizerFast`` (same ids; pad and eos tokens set)."""
    from transformers import PreTrainedTokenizerFast  # slow import, only when asked for

    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS)
