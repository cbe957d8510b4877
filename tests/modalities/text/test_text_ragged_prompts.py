"""Text prompts of different lengths through GenerativeModule.sample: encoded by the codec, left-padded,
and decoded exactly as each prompt alone (our backbone and the GPT-2 backbone)."""

import pytest
import torch

from framework.training.module import GenerativeModule

PROMPTS = ["To be, or not to be", "What", "Now is the winter of our discontent"]


@pytest.mark.parametrize("backbone", [{"dim": 32, "depth": 2, "heads": 2},
                                      {"type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 2}],
                         ids=["polyguide", "gpt2"])
def test_text_prompts_of_different_lengths_decode_as_each_alone(codec, tokenizer_name, backbone):
    torch.manual_seed(0)
    model = GenerativeModule(family="autoregressive", modality="text", family_args={"eos_id": None,
                                                                                   "temperature": 0},
                             conditions=[{"name": "genre", "labels": ["comedy", "history", "tragedy"]}],
                             representation={"name": "bpe", "tokenizer": tokenizer_name, "length": 32,
                                             "cache_dir": str(codec.path.parent)},
                             backbone=dict(backbone))
    with torch.no_grad():
        for p in model.backbone.parameters():  # adaLN-Zero blocks start as identities: make attention count
            p.add_(torch.randn_like(p) * 0.2)
    lengths = {len(codec.prompt(p)[0]) for p in PROMPTS}
    assert len(lengths) == len(PROMPTS)  # really ragged
    genres = ["comedy", "history", "tragedy"]
    batched = model.sample({"genre": genres}, "cfg(genre, 3)", n=3, steps=6, init=PROMPTS).samples
    for i, text in enumerate(PROMPTS):
        alone = model.sample({"genre": genres[i]}, "cfg(genre, 3)", n=1, steps=6, init=[text]).samples
        assert torch.equal(batched[i:i + 1], alone), text
