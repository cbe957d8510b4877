"""Contrastive decoding: autoguidance in log space plus the expert's plausibility mask."""

import math

import pytest
import torch

from framework.core.conditions import Conditions, ConditionSpec
from framework.generators import Autoregressive
from framework.guidance import Guider, parse
from framework.guidance import presets as G
from framework.guidance.ops.plausibility import MASKED
from framework.guidance.spaces import DiscreteSpaces
from framework.nn import Backbone, BackboneConfig

SPECS = {"genre": ConditionSpec("genre", labels=("comedy", "tragedy"))}
V = 12


def _logits(seed):
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(2, 3, V, generator=g) * 2  # [genre present?, genre, V]

    def model(x, t, c):
        row = torch.where(c.present["genre"], c.values["genre"], torch.full_like(c.values["genre"], 2))
        return table[c.present["genre"].long(), row] + 0.1 * x.float().sum(-1, keepdim=True)
    return model


@pytest.mark.parametrize(("beta", "alpha"), [(0.5, 0.1), (2.0, 0.3), (1.0, 1.0)])
def test_contrastive_matches_the_papers_formula(beta, alpha):
    expert, amateur = _logits(0), _logits(1)
    g = Guider(G.contrastive("genre", beta, alpha), {"main": expert, "weak": amateur}, native_space="logits",
               converter=DiscreteSpaces(), output_space="logprobs", specs=SPECS)
    conds = Conditions.from_raw(SPECS, {"genre": ["comedy", "tragedy", "comedy"]}, 3)
    x = torch.zeros(3, 1)
    out = g.step(x, torch.zeros(3), 0.0, conds, g.new_state())
    le, la = (torch.log_softmax(m(x, None, conds), -1) for m in (expert, amateur))
    head = le >= le.max(-1, keepdim=True).values + math.log(alpha)
    want = torch.where(head, (1 + beta) * le - beta * la, torch.full_like(le, MASKED))
    torch.testing.assert_close(out.denoise, want)
    assert out.stats.nfe == 2 and out.stats.forward_calls == 2  # one forward per network
    # renormalised, masked tokens have probability 0 and the expert's favourite always survives
    p = torch.softmax(out.denoise, -1)
    assert float(p[~head].sum()) == 0.0 and bool(head.gather(-1, le.argmax(-1, keepdim=True)).all())
    if alpha == 1.0:  # only the expert's argmax is plausible: contrastive = greedy expert
        assert torch.equal(out.denoise.argmax(-1), le.argmax(-1))


def _lm(seed):
    torch.manual_seed(seed)
    m = Backbone(BackboneConfig(seq_len=8, vocab_size=V + 1, out_dim=V, dim=32, depth=1, heads=2, time=False,
                                causal=True, conditions=tuple(SPECS.values())))
    with torch.no_grad():
        m.head.weight.mul_(20)  # peaked distributions, so the mask matters
    return m.eval()


def test_contrastive_greedy_decoding_equals_the_uncached_formula():
    expert, amateur = _lm(0), _lm(1)
    conds = Conditions.from_raw(SPECS, {"genre": "comedy"}, 2)
    with torch.no_grad():
        fam = Autoregressive(V, temperature=0)
        out = fam.sample({"main": expert, "weak": amateur}, "contrastive(genre, 1.5, 0.2)", conds, (6,), 6,
                         specs=SPECS)
        x, masked = torch.full((2, 1), V), 0
        for _ in range(6):
            le = torch.log_softmax(expert(x, None, conds)[:, -1], -1)
            la = torch.log_softmax(amateur(x, None, conds)[:, -1], -1)
            head = le >= le.max(-1, keepdim=True).values + math.log(0.2)
            masked += int((~head).sum())
            score = torch.where(head, 2.5 * le - 1.5 * la, torch.tensor(-math.inf))
            x = torch.cat([x, score.argmax(-1, keepdim=True)], 1)
    assert masked > 0 and torch.equal(out.samples, x[:, 1:])


def test_contrastive_parses_and_rejects_a_bad_alpha():
    assert "alpha=0.1" in repr(parse("contrastive(genre, 0.5, 0.1)"))
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\], got 0"):
        G.contrastive("genre", 1.0, 0.0)
