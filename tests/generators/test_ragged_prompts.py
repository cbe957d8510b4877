"""Autoregressive prompts of different lengths: left padding + attention mask, batched with guidance,
decode exactly what each prompt decodes alone (our backbone, the exact toy LM, and a transformers
GPT-2 against ``generate``)."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from framework.core.conditions import Conditions, ConditionSpec
from framework.generators import Autoregressive
from framework.guidance import presets as G
from framework.nn import Backbone, BackboneConfig, CausalLMAdapter
from framework.toy.model import ToyLM

V = 12
SPEC_MAP = {"shape": ConditionSpec("shape", labels=("a", "b", "c"))}
PROMPTS = [[3, 1, 4, 1, 5], [], [9], [2, 6, 5]]
LABELS = ["a", "b", "c", "a"]
EXPRS = {
    "cfg": G.cfg("shape", 3.0),
    "interval": G.interval("shape", 4.0, 0.3, 0.6),  # the unconditional branch joins mid-way and leaves
    "pag": G.pag(2.0, "shape", base=G.cfg("shape", 2.0)),
}


def _backbone() -> Backbone:
    torch.manual_seed(0)
    cfg = BackboneConfig(seq_len=32, vocab_size=V + 1, out_dim=V, dim=32, depth=2, heads=2, time=False,
                         causal=True, conditions=tuple(SPEC_MAP.values()))
    net = Backbone(cfg)
    with torch.no_grad():  # adaLN-Zero starts every block as the identity: make attention matter
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    return net.eval()


def _decode(net, expr, prompts, labels, steps=8):
    conds = Conditions.from_raw(SPEC_MAP, {"shape": labels}, len(labels))
    with torch.no_grad():
        return Autoregressive(V, temperature=0).sample(net, expr, conds, (steps,), steps, specs=SPEC_MAP,
                                                       init=prompts).samples


@pytest.mark.parametrize("name", EXPRS)
def test_backbone_ragged_batch_equals_each_prompt_alone(name):
    net, expr = _backbone(), EXPRS[name]
    batched = _decode(net, expr, PROMPTS, LABELS)
    alone = torch.cat([_decode(net, expr, torch.tensor([p], dtype=torch.long).reshape(1, len(p)), [lbl])
                       for p, lbl in zip(PROMPTS, LABELS, strict=True)])
    assert torch.equal(batched, alone)


def test_the_mask_matters():
    """Without hiding the padding, padded rows decode something else (so the test above can fail)."""
    net = _backbone()
    x = torch.tensor([[-1, -1, V, 9], [V, 3, 1, 4]])
    conds = Conditions.from_raw(SPEC_MAP, {"shape": ["a", "b"]}, 2)
    masked = net(x.clamp(min=0), None, conds, attention_mask=x >= 0)[0, -1]
    alone = net(torch.tensor([[V, 9]]), None, conds.index(slice(0, 1)))[0, -1]
    unmasked = net(x.clamp(min=0), None, conds)[0, -1]
    torch.testing.assert_close(masked, alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(unmasked, alone, atol=1e-3)


def test_exact_toy_lm_ragged_batch_equals_each_prompt_alone(toy):
    specs = toy.specs
    prompts, shapes = [[0, 0, 4], [1], [], [2, 7, 7, 7, 3]], ["circle", "square", "star", "triangle"]
    conds = Conditions.from_raw(specs, {"shape": shapes, "color": "green"}, 4)
    fam = Autoregressive(toy.vocab, temperature=0)
    expr = G.nested(["shape", "color"], [2.0, 3.0])
    batched = fam.sample(ToyLM(toy), expr, conds, (6,), 6, specs=specs, init=prompts).samples
    for i, p in enumerate(prompts):
        alone = fam.sample(ToyLM(toy), expr, conds.index(slice(i, i + 1)), (6,), 6, specs=specs,
                           init=torch.tensor([p], dtype=torch.long).reshape(1, len(p))).samples
        assert torch.equal(batched[i:i + 1], alone)


def _gpt2():
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=CausalLMAdapter.vocab_needed(V, tuple(SPEC_MAP.values())), n_positions=64,
                     n_embd=32, n_layer=2, n_head=2, bos_token_id=V, eos_token_id=V, pad_token_id=V)
    lm = GPT2LMHeadModel(cfg).eval()
    return lm, CausalLMAdapter(lm, V, tuple(SPEC_MAP.values()))


@pytest.mark.parametrize("w", [1.0, 3.0])
def test_gpt2_adapter_ragged_batch_matches_generate_per_prompt(w):
    lm, model = _gpt2()
    ours = _decode(model, G.cfg("shape", w), PROMPTS, LABELS, steps=10)
    conds = Conditions.from_raw(SPEC_MAP, {"shape": LABELS}, len(LABELS))
    null = Conditions(dict(conds.values), {"shape": torch.zeros(len(LABELS), dtype=torch.bool)})
    suppress = list(range(V, lm.config.vocab_size))
    for i, p in enumerate(PROMPTS):
        tail = torch.tensor([[V, *p]])
        ids = torch.cat([model.prefix(conds.index(slice(i, i + 1))), tail], 1)
        negative = torch.cat([model.prefix(null.index(slice(i, i + 1))), tail], 1)
        kwargs = {} if w == 1.0 else {"guidance_scale": w, "negative_prompt_ids": negative}
        with torch.no_grad():
            theirs = lm.generate(ids, max_new_tokens=10, min_new_tokens=10, do_sample=False,
                                 suppress_tokens=suppress, **kwargs)
        assert torch.equal(ours[i], theirs[0, ids.shape[1]:]), i


def test_gpt2_adapter_ragged_batch_matches_left_padded_generate():
    """Unguided: transformers' own left-padded batch (attention_mask) decodes the same tokens."""
    lm, model = _gpt2()
    ours = _decode(model, "cond(shape)", PROMPTS, LABELS, steps=10)
    conds = Conditions.from_raw(SPEC_MAP, {"shape": LABELS}, len(LABELS))
    rows = [torch.cat([model.prefix(conds.index(slice(i, i + 1)))[0], torch.tensor([V, *p])])
            for i, p in enumerate(PROMPTS)]
    width = max(len(r) for r in rows)
    ids = torch.stack([torch.cat([torch.full((width - len(r),), V), r]) for r in rows])
    mask = torch.stack([torch.cat([torch.zeros(width - len(r)), torch.ones(len(r))]).long() for r in rows])
    with torch.no_grad():
        theirs = lm.generate(ids, attention_mask=mask, max_new_tokens=10, min_new_tokens=10, do_sample=False,
                             suppress_tokens=list(range(V, lm.config.vocab_size)))
    assert torch.equal(ours, theirs[:, width:])


class _NoMask:
    def __init__(self, net):
        self.net, self.new_cache = net, net.new_cache

    def __call__(self, tokens, t, conditions, cache=None):
        return self.net(tokens, t, conditions, cache=cache)


BAD = {
    "rows != samples": ([[1], [2, 3]], 3, ValueError, r"prompt has 2 rows for 3 samples"),
    "id out of range": ([[1], [2, V]], 2, ValueError, rf"prompt 1 has token ids outside 0..{V - 1}: \[{V}\]"),
    "negative id": ([[-1, 2], [2]], 2, ValueError, r"prompt 0 has token ids outside"),
    "float ids": ([[1.0, 2.5], [2]], 2, ValueError, r"prompt 0 must hold integer token ids"),
    "nested row": ([[1, [2]], [2]], 2, ValueError, r"prompt 0 is not a sequence of token ids"),
    "2-D row": ([[[1, 2]], [2]], 2, ValueError, r"prompt 0 has shape \(1, 2\); each prompt is"),
    "text": (["to be", "or not"], 2, TypeError, r"text prompts need the model's tokenizer"),
    "3-D tensor": (torch.zeros(2, 2, 1, dtype=torch.long), 2, ValueError, r"tensor has shape \[n, P\]"),
    "too long": ([list(range(V)) * 3, [1]], 2, ValueError, r"exceeds the backbone's seq_len=32"),
    "no attention_mask": ([[1, 2], [3]], 2, TypeError, r"network _NoMask takes no attention_mask"),
}


@pytest.mark.fault("ragged prompts")
@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_bad_prompts_get_one_clear_error(case):
    prompts, n, error, message = case
    net = _backbone() if "attention_mask" not in message else _NoMask(_backbone())
    with pytest.raises(error, match=message):
        _decode(net, G.cfg("shape", 2.0), prompts, ["a"] * n, steps=4)
