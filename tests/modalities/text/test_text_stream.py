"""Streaming guided text: what is emitted is the sample, and generation continues past the model's
length through a sliding window."""

import torch

from framework.cli.commands import stream_text
from framework.training.module import GenerativeModule


def test_stream_continues_past_the_model_length_and_emits_the_text(codec, tokenizer_name):
    model = GenerativeModule(family="autoregressive", modality="text", family_args={"eos_id": None},
                             conditions=[{"name": "genre", "labels": ["comedy", "history", "tragedy"]}],
                             representation={"name": "bpe", "tokenizer": tokenizer_name, "length": 32,
                                             "cache_dir": str(codec.path.parent)},
                             backbone={"dim": 32, "depth": 1, "heads": 2})
    with torch.no_grad():  # never end a speech: the stream must run to max_tokens
        model.backbone.head.bias[:codec.n_special] = -1e4
    pieces = []
    r = stream_text(model, {"genre": "comedy"}, "cfg(genre, 2)", "Who's there?", 80, seed=0,
                    emit=lambda *a, **k: pieces.append("".join(a)))
    assert "".join(pieces) == r["text"] and r["text"].startswith("Who's there?")
    # 80 new tokens through windows of at most 32 (prompt + new), 2 branches per step
    assert r["tokens"] == r["steps"] == 80 and r["nfe"] == 160
