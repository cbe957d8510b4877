"""Masked family: a step that committed no token reuses the network's output exactly."""

import pytest
import torch

from framework.core.conditions import Conditions
from framework.generators import Masked
from framework.guidance import presets as G
from framework.nn import Backbone, BackboneConfig

TARGET = {"shape": "square", "color": "green"}


class Counting:
    """Wraps a network and counts the rows it is called on."""

    def __init__(self, net) -> None:
        self.net, self.rows, self.calls = net, 0, 0

    def __call__(self, x, t, c, **kw):
        self.rows += x.shape[0]
        self.calls += 1
        return self.net(x, t, c, **kw)


def _backbone(toy, L):
    torch.manual_seed(0)
    return Backbone(BackboneConfig(seq_len=L, vocab_size=toy.vocab + 1, out_dim=toy.vocab, dim=32, depth=2,
                                   heads=2, time=True, time_scale=1000.0,
                                   conditions=tuple(toy.specs.values()))).eval()


@pytest.mark.parametrize("guidance", ["cond(shape, color)", G.cfg(("shape", "color"), 3.0),
                                      G.independent(["shape", "color"], [2.0, 2.0]), G.icg("shape", 2.0)])
@pytest.mark.parametrize("order", ["confidence", "random"])
def test_reuse_is_bit_identical_and_skips_the_steps_that_commit_nothing(toy, guidance, order):
    L, steps, n = 8, 24, 6  # 3 steps per position: most steps commit no token
    net = _backbone(toy, L)
    conds = Conditions.from_raw(toy.specs, TARGET, n)
    outs, counted = {}, {}
    for reuse in (False, True):
        counted[reuse] = Counting(net)
        outs[reuse] = Masked(toy.vocab, order=order, reuse_unchanged=reuse).sample(
            counted[reuse], guidance, conds, (L,), steps, specs=toy.specs,
            generator=torch.Generator().manual_seed(1))
    plain, fast = outs[False], outs[True]
    assert torch.equal(plain.samples, fast.samples)
    # the network was called only on steps whose tokens changed, and the statistics say so
    committed = [1] + [int(a != b) for a, b in zip(_masked_counts(toy, L, steps)[:-1],
                                                     _masked_counts(toy, L, steps)[1:], strict=True)]
    per_step = plain.stats[0].nfe
    if "icg" in repr(guidance):  # a new shuffle each step: the inputs change, nothing is reused
        assert counted[True].rows == counted[False].rows and fast.nfe == plain.nfe
        return
    assert [s.nfe for s in fast.stats] == [per_step * c for c in committed]
    assert [s.cached for s in fast.stats] == [per_step * (1 - c) for c in committed]
    assert counted[True].rows == n * fast.nfe < counted[False].rows == n * plain.nfe
    assert fast.nfe_rows == fast.nfe


def _masked_counts(toy, L, steps):
    """Positions still masked before each step (the family's cosine schedule)."""
    fam = Masked(toy.vocab)
    return [L] + [fam.still_masked(i, steps, L) for i in range(steps - 1)]


def test_no_reuse_when_the_conditioner_draws_noise(toy):
    L, steps = 8, 24
    net = Counting(_backbone(toy, L))
    conds = Conditions.from_raw(toy.specs, TARGET, 4)
    Masked(toy.vocab).sample(net, G.cads("shape", 2.0), conds, (L,), steps, specs=toy.specs,
                             generator=torch.Generator().manual_seed(0))
    assert net.calls == steps  # CADS noise differs every call: never the same inputs
