"""Streaming guided text: what is emitted is the sample, and generation continues past the model's
length through a sliding window."""

import torch

from framework.cli.commands import stream_text
from framework.training.module import GenerativeModule
from modalities.text.codecs import media_to_texts


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


def _tiny(codec, tokenizer_name, eos: bool = False) -> GenerativeModule:
    torch.manual_seed(0)
    return GenerativeModule(family="autoregressive", modality="text",
                            family_args={"eos_id": codec.eos_id if eos else None},
                            conditions=[{"name": "genre", "labels": ["comedy", "history", "tragedy"]}],
                            representation={"name": "bpe", "tokenizer": tokenizer_name, "length": 32,
                                            "cache_dir": str(codec.path.parent)},
                            backbone={"dim": 32, "depth": 1, "heads": 2})


def test_a_prompt_is_whole_words_the_next_token_does_not_glue_onto_it(codec, tokenizer_name):
    model = _tiny(codec, tokenizer_name)
    glue = codec.word_continuations("Who")
    assert glue.any() and not glue[:codec.n_special].any()
    assert not codec.word_continuations("Who ").any() and not codec.word_continuations("Who,").any()
    with torch.no_grad():  # make every word-continuation token far likelier than anything else
        model.backbone.head.bias[glue] = 30.0
        model.backbone.head.bias[:codec.n_special] = -1e4
    ids = codec.prompt("Who", 3)
    raw = model.sample({"genre": "comedy"}, "cfg(genre, 2)", n=3, steps=2, seed=0, init=ids)
    assert glue[raw.samples[:, 0]].all()  # without the rule the model glues onto the word (the bug)
    out = model.sample({"genre": "comedy"}, "cfg(genre, 2)", n=3, steps=2, seed=0, init=["Who"] * 3)
    assert not glue[out.samples[:, 0]].any()  # the first token starts a new word or is punctuation
    texts = media_to_texts(out.media)
    assert all(t.startswith("Who") and not t[3].isalnum() for t in texts), texts  # the prompt is included
    assert glue[out.samples[:, 1]].all()  # only the first token is constrained
    r = stream_text(model, {"genre": "comedy"}, "cfg(genre, 2)", "Who", 3, seed=0, emit=lambda *a, **k: None)
    assert r["text"].startswith("Who") and not r["text"][3].isalnum(), r["text"]


def test_a_speech_ends_at_the_end_token_unless_asked_to_continue(codec, tokenizer_name):
    model = _tiny(codec, tokenizer_name)
    with torch.no_grad():  # speeches of a few tokens: the end token is likely
        model.backbone.head.bias[codec.eos_id] = 4.0
        model.backbone.head.bias[codec.pad_id] = -1e4
    quiet = {"emit": lambda *a, **k: None}
    one = stream_text(model, {"genre": "comedy"}, None, "Who", 60, seed=1, **quiet)
    assert one["ended"] and one["tokens"] < 60 and len(one["speeches"]) == 1
    more = stream_text(model, {"genre": "comedy"}, None, "Who", 60, seed=1, keep_going=True, **quiet)
    assert more["tokens"] == 60 and len(more["speeches"]) > 1
    assert more["speeches"][0] == one["speeches"][0]  # the same first speech, then further ones
    assert more["text"] == "\n\n".join(more["speeches"]) and more["text"].startswith("Who")


def test_streaming_writes_n_texts_with_out(tmp_path, capsys):
    from pathlib import Path

    from framework.cli.main import main

    ckpt = Path(__file__).resolve().parents[3] / "recipes/text/checkpoints/shakespeare_ar.ckpt"
    assert main(["sample", "--checkpoint", str(ckpt), "--prompt", "Enter", "--max-tokens", "8", "--n", "2",
                 "--seed", "3", "--cond", "genre=comedy", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "=== sample 1 ===" in printed and "=== sample 2 ===" in printed and "seed 3" in printed
    texts = [(tmp_path / f"sample_{i:03d}.txt").read_text(encoding="utf-8") for i in range(2)]
    assert all(t.startswith("Enter") and not t[5].isalnum() for t in texts), texts  # not "Enterlse"
    assert texts[0] != texts[1] and (tmp_path / "samples.txt").is_file()


def test_min_tokens_keeps_a_speech_going_until_then(codec, tokenizer_name):
    model = _tiny(codec, tokenizer_name, eos=True)
    with torch.no_grad():  # the end token is by far the likeliest: speeches end at once
        model.backbone.head.bias[codec.eos_id] = 14.0
        model.backbone.head.bias[codec.pad_id] = -1e4
    quiet = {"emit": lambda *a, **k: None}
    short = stream_text(model, {"genre": "comedy"}, None, "Who", 60, seed=1, **quiet)
    assert short["ended"] and short["tokens"] <= 2
    for m in (5, 40):  # 40: past the model's 32-token window, so through a re-prefilled window too
        r = stream_text(model, {"genre": "comedy"}, None, "Who", 60, seed=1, min_tokens=m, **quiet)
        assert r["ended"] and r["tokens"] == m + 1, (m, r["tokens"])  # m tokens, then the end token
    more = stream_text(model, {"genre": "comedy"}, None, "Who", 30, seed=1, min_tokens=6, keep_going=True,
                       **quiet)
    # four speeches of 6 tokens and an end token each (28 tokens), then 2 tokens of a fifth
    assert more["tokens"] == 30 and len(more["speeches"]) == 5


def test_min_tokens_errors_name_the_value(capsys):
    from pathlib import Path

    from framework.cli.main import main

    ckpt = Path(__file__).resolve().parents[3] / "recipes/text/checkpoints/shakespeare_ar.ckpt"
    base = ["sample", "--checkpoint", str(ckpt), "--cond", "genre=comedy", "--seed", "0"]
    cases = [(["--min-tokens", "9"], "--min-tokens applies when streaming"),
             (["--max-tokens", "8", "--min-tokens", "9"], "--min-tokens 9 is more than --max-tokens (8)"),
             (["--prompt", "Who", "--min-tokens", "65"], "--min-tokens 65 is more than --max-tokens (64)"),
             (["--max-tokens", "8", "--min-tokens", "0"], "--min-tokens: must be between 1"),
             (["--max-tokens", "8", "--min-tokens", "x"], "expected a whole number")]
    for extra, message in cases:
        try:
            code = main(base + extra)
        except SystemExit as e:  # argparse's own errors
            code = e.code
        assert code == 2, extra
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (extra, err)
    assert main([*base, "--prompt", "Who", "--max-tokens", "20", "--min-tokens", "12"]) == 0
