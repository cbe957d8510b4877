"""Constrained decoding: models that mark disallowed tokens with -inf, sampled under guidance."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from framework.core.conditions import Conditions, ConditionSpec
from framework.generators import Autoregressive, Masked
from framework.guidance import presets as G
from framework.nn import CausalLMAdapter
from framework.toy.model import ToyLM

TARGET = {"shape": "square", "color": "green"}
SQUARE = 1  # the token guidance towards "square" favours most


class Banned:
    """Wraps a network: ``banned`` token ids get -inf logits in every row and branch."""

    def __init__(self, net, banned: list[int], only_rows_without: str | None = None) -> None:
        self.net, self.banned, self.only_rows_without = net, banned, only_rows_without
        if hasattr(net, "new_cache"):
            self.new_cache = net.new_cache

    def __call__(self, x, t, conditions, **kw):
        out = self.net(x, t, conditions, **kw)
        rows = torch.ones(out.shape[0], dtype=torch.bool)
        if self.only_rows_without is not None:  # e.g. only the unconditional branch's rows
            rows = ~conditions.present[self.only_rows_without]
        ban = torch.zeros(out.shape[-1], dtype=torch.bool)
        ban[self.banned] = True
        return out.masked_fill(rows.view(-1, *[1] * (out.ndim - 1)) & ban, -math.inf)


class NoRepeat:
    """A prefix-dependent constraint: the next token may not repeat the current one."""

    def __init__(self, lm, vocab: int) -> None:
        self.lm, self.vocab = lm, vocab
        self.new_cache = lm.new_cache

    def __call__(self, tokens, t, conditions, cache=None):
        out = self.lm(tokens, t, conditions, cache=cache)
        data = tokens < self.vocab  # BOS carries no constraint
        block = torch.nn.functional.one_hot(tokens.clamp(max=self.vocab - 1), out.shape[-1]).bool()
        return out.masked_fill(block & data[..., None], -math.inf)


def _families(toy):
    return {"autoregressive": (Autoregressive(toy.vocab), ToyLM(toy)),
            "masked": (Masked(toy.vocab, order="random"), toy)}


@pytest.mark.parametrize("family", ["autoregressive", "masked"])
def test_constrained_tokens_never_appear_under_cfg(toy, family):
    fam, net = _families(toy)[family]
    conds = Conditions.from_raw(toy.specs, TARGET, 300)
    g = G.cfg(("shape", "color"), 3.0)
    free = fam.sample(net, g, conds, (8,), 8, specs=toy.specs, generator=torch.Generator().manual_seed(0))
    banned = [SQUARE, 8]
    out = fam.sample(Banned(net, banned), g, conds, (8,), 8, specs=toy.specs,
                     generator=torch.Generator().manual_seed(0))
    assert int((free.samples == SQUARE).sum()) > 300  # guidance favours the token the constraint bans
    assert not bool(torch.isin(out.samples, torch.tensor(banned)).any())
    # the rest is still guided: the colour token (green = 5) gains the banned tokens' share
    green, free_green = float((out.samples == 5).double().mean()), float((free.samples == 5).double().mean())
    assert green > free_green
    assert out.nfe == free.nfe


def test_a_prefix_dependent_constraint_holds_with_kv_caches(toy):
    fam = Autoregressive(toy.vocab)
    conds = Conditions.from_raw(toy.specs, TARGET, 200)
    out = fam.sample(NoRepeat(ToyLM(toy), toy.vocab), G.nested(["shape", "color"], [2.0, 3.0]), conds,
                     (10,), 10, specs=toy.specs, generator=torch.Generator().manual_seed(1))
    assert not bool((out.samples[:, 1:] == out.samples[:, :-1]).any())


@pytest.mark.fault("logits")
@pytest.mark.parametrize("family", ["autoregressive", "masked"])
def test_a_constraint_only_the_unconditional_branch_applies_is_an_error(toy, family):
    fam, net = _families(toy)[family]
    conds = Conditions.from_raw(toy.specs, TARGET, 4)
    net = Banned(net, [3], only_rows_without="shape")
    with pytest.raises(FloatingPointError, match=r"uncond\(\) has coefficient -2 and marks token 3 -inf"):
        fam.sample(net, G.cfg(("shape", "color"), 3.0), conds, (6,), 6, specs=toy.specs,
                   generator=torch.Generator().manual_seed(0))


V = 20
SPECS = (ConditionSpec("shape", labels=("a", "b", "c")),)


@pytest.mark.parametrize("w", [1.0, 3.0])
def test_constrained_guided_greedy_decoding_matches_transformers_generate(w):
    """Ours: -inf in every branch. transformers: CFG processor, then suppress_tokens."""
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=CausalLMAdapter.vocab_needed(V, SPECS), n_positions=64, n_embd=32, n_layer=2,
                     n_head=2, bos_token_id=V, eos_token_id=V, pad_token_id=V)
    lm = GPT2LMHeadModel(cfg).eval()
    model = CausalLMAdapter(lm, V, SPECS)
    spec_map = {s.name: s for s in SPECS}
    conds = Conditions.from_raw(spec_map, {"shape": ["a", "b", "c"]}, 3)
    with torch.no_grad():
        free = Autoregressive(V, temperature=0).sample(model, G.cfg("shape", w), conds, (10,), 10,
                                                       specs=spec_map).samples
        banned = sorted(set(free[:, :3].reshape(-1).tolist()))  # tokens the free run chose early on
        ours = Autoregressive(V, temperature=0).sample(Banned(model, banned), G.cfg("shape", w), conds, (10,),
                                                       10, specs=spec_map).samples
        bos = torch.full((3, 1), V)
        cond_ids = torch.cat([model.prefix(conds), bos], 1)
        null = Conditions(dict(conds.values), {"shape": torch.zeros(3, dtype=torch.bool)})
        kwargs = {} if w == 1.0 else {"guidance_scale": w,
                                      "negative_prompt_ids": torch.cat([model.prefix(null), bos], 1)}
        theirs = lm.generate(cond_ids, max_new_tokens=10, min_new_tokens=10, do_sample=False,
                             suppress_tokens=banned + list(range(V, lm.config.vocab_size)), **kwargs)
    assert not bool(torch.isin(ours, torch.tensor(banned)).any())
    assert not torch.equal(ours, free)
    assert torch.equal(ours, theirs[:, cond_ids.shape[1]:])
