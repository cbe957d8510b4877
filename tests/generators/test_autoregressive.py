"""Autoregressive family: guided decoding with per-branch KV caches."""

import pytest
import torch

from framework.core.conditions import Conditions
from framework.generators import Autoregressive
from framework.generators.autoregressive import filter_logprobs
from framework.guidance import presets as G
from framework.guidance.expr import Expr
from framework.nn import Backbone, BackboneConfig
from framework.toy.model import CategoricalMixtureToy, ToyLM

TARGET = {"shape": "square", "color": "green"}


def test_ancestral_sampling_with_the_exact_model_reproduces_the_data_distribution(toy):
    fam = Autoregressive(toy.vocab)
    conds = Conditions.from_raw(toy.specs, TARGET, 600)
    out = fam.sample(ToyLM(toy), "cond(shape, color)", conds, (10,), 10, specs=toy.specs,
                     generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(out.samples.reshape(-1), minlength=toy.vocab).double() / out.samples.numel()
    torch.testing.assert_close(freq, toy.probs[4], atol=0.015, rtol=0)


def test_guidance_raises_accuracy_with_exact_branch_counts(toy, both_right):
    fam = Autoregressive(toy.vocab)
    conds = Conditions.from_raw(toy.specs, TARGET, 400)
    acc, nfe = {}, {}
    for name, g in [("w=1", "cond(shape, color)"), ("cfg", G.cfg(("shape", "color"), 3.0)),
                    ("double", G.double("shape", "color", 2.0, 2.0))]:
        out = fam.sample(ToyLM(toy), g, conds, (8,), 8, specs=toy.specs,
                         generator=torch.Generator().manual_seed(1))
        acc[name], nfe[name] = both_right(toy, out.samples), set(out.branches_per_step)
    assert acc["cfg"] > acc["w=1"] + 0.1 and acc["double"] > acc["w=1"] + 0.1, acc
    assert nfe == {"w=1": {1}, "cfg": {2}, "double": {3}}


def test_cached_decoding_feeds_one_token_per_step(toy):
    lm = ToyLM(toy)
    prompt = torch.tensor([[1, 4], [0, 5]])
    Autoregressive(toy.vocab, temperature=0).sample(
        lm, G.cfg("shape", 2.0), Conditions.from_raw(toy.specs, {"shape": "square"}, 2), (5,), 5,
        specs=toy.specs, init=prompt)
    # first call: the BOS + prompt for both branches (2 × 2 rows); then one new token per step
    assert lm.fed == [(4, 3)] + [(4, 1)] * 4


def _reference_greedy(lm_logits, expr: Expr, toy, conds: Conditions, steps: int, bos: int) -> torch.Tensor:
    """Uncached greedy decoding: every branch re-reads the whole prefix each step."""
    B = conds.batch_size
    x = torch.full((B, 1), bos)
    for i in range(steps):
        tau = i / (steps - 1)
        total = 0
        for branch, coef in expr.coefficients(tau).items():
            present = {n: torch.full((B,), n in branch.names) for n in conds.names}
            logits = lm_logits(x, Conditions(dict(conds.values), present))[:, -1]
            total = total + coef * torch.log_softmax(logits.float(), -1)
        x = torch.cat([x, total.argmax(-1, keepdim=True)], 1)
    return x[:, 1:]


@pytest.mark.parametrize("expr", [
    G.cfg(("shape", "color"), 2.5),
    G.nested(["shape", "color"], [2.0, 4.0]),
    G.interval(("shape", "color"), 4.0, 0.3, 0.6),  # the unconditional branch joins and leaves
    G.independent(["shape", "color"], [3.0, 2.0]).within(0.5, 1.0),  # 1 branch, then 3
], ids=["cfg", "nested", "interval", "within"])
def test_cached_guided_decoding_equals_uncached_decoding(toy, expr):
    conds = Conditions.from_raw(toy.specs, {"shape": ["square", "star", "circle"], "color": "green"}, 3)
    fam = Autoregressive(toy.vocab, temperature=0)
    ours = fam.sample(ToyLM(toy), expr, conds, (9,), 9, specs=toy.specs).samples
    ref = _reference_greedy(lambda x, c: toy.next_logits(x, c), expr, toy, conds, 9, fam.bos_id)
    assert torch.equal(ours, ref)


def test_backbone_kv_caches_follow_branches_in_and_out():
    torch.manual_seed(0)
    toy = CategoricalMixtureToy()
    lm = Backbone(BackboneConfig(seq_len=16, vocab_size=toy.vocab + 1, out_dim=toy.vocab, dim=32, depth=2,
                                 heads=4, time=False, causal=True, conditions=tuple(toy.specs.values())))
    with torch.no_grad():
        for name, p in lm.named_parameters():
            if "ada" in name:
                p.normal_(0, 0.05)
    lm.eval()
    conds = Conditions.from_raw(toy.specs, {"shape": ["square", "star"], "color": "red"}, 2)
    fam = Autoregressive(toy.vocab, temperature=0)
    expr = G.interval(("shape", "color"), 6.0, 0.2, 0.7)
    with torch.no_grad():
        ours = fam.sample(lm, expr, conds, (10,), 10, specs=toy.specs).samples
        ref = _reference_greedy(lambda x, c: lm(x, None, c), expr, toy, conds, 10, fam.bos_id)
    assert torch.equal(ours, ref)


def test_filters_match_transformers_warpers():
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    logp = torch.log_softmax(torch.randn(6, 50, generator=torch.Generator().manual_seed(0)) * 2, -1)
    for k in (1, 5, 20):
        ours = filter_logprobs(logp, top_k=k).isfinite()
        assert torch.equal(ours, TopKLogitsWarper(k)(None, logp.clone()).isfinite())
    for p in (0.3, 0.8, 0.95):
        ours = filter_logprobs(logp, top_p=p).isfinite()
        assert torch.equal(ours, TopPLogitsWarper(p)(None, logp.clone()).isfinite())
    torch.testing.assert_close(filter_logprobs(logp, temperature=0.5), torch.log_softmax(logp / 0.5, -1))


def test_nll_of_the_exact_model(toy):
    fam = Autoregressive(toy.vocab)
    conds = Conditions.from_raw(toy.specs, TARGET, 32)
    x0 = toy.sample_data(conds, 6, torch.Generator().manual_seed(0))
    lm = ToyLM(toy)
    nll = fam.nll(lambda x, t, c: lm(x, t, c), x0, conds)
    torch.testing.assert_close(nll.double(), -toy.probs[4].log()[x0].mean(1), rtol=1e-5, atol=1e-5)


def test_eos_and_errors(toy):
    fam = Autoregressive(toy.vocab, temperature=0, eos_id=1)
    out = fam.sample(ToyLM(toy), "cond(shape, color)", Conditions.from_raw(toy.specs, TARGET, 2), (6,), 6,
                     specs=toy.specs)
    first = (out.samples == 1).float().argmax(1)
    for row, i in zip(out.samples, first, strict=True):
        assert bool((row[i:] == 1).all())
    # once every row has ended, no further steps are evaluated
    assert bool((out.samples == 1).any(1).all()) and len(out.stats) == int(first.max()) + 1 < 6
    with pytest.raises(ValueError, match="cannot be chunked"):
        fam.sample(ToyLM(toy), G.cfg("shape", 2.0), Conditions.from_raw(toy.specs, TARGET, 2), (3,), 3,
                   specs=toy.specs, max_batch=2)
    with pytest.raises(ValueError, match="temperature must be ≥ 0"):
        Autoregressive(10, temperature=-1)
