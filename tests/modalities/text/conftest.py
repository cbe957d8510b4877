"""Shared, session-wide caches: a small tokenizer (vocabulary 512) and the genre judge, each built
once in a temporary folder (never under ~/.cache)."""

import pytest

from modalities.text.codecs import BPETokens

TOKENIZER = "shakespeare-512"


@pytest.fixture(scope="session")
def text_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("text-cache")


@pytest.fixture(scope="session")
def tokenizer_name() -> str:
    return TOKENIZER


@pytest.fixture(scope="session")
def codec(text_cache) -> BPETokens:
    """Trains the 512-token tokenizer into the cache on first use (about 1.5 s)."""
    return BPETokens(TOKENIZER, length=32, cache_dir=str(text_cache))
