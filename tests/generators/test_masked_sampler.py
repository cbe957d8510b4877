"""The masked family's sampler options: top-k, ReMDM remasking, stratified training mask rates."""

import itertools

import pytest
import torch

from framework.core.conditions import Conditions
from framework.generators import Masked

TARGET = {"shape": "square", "color": "green"}


def test_top_k_1_draws_the_most_likely_tokens_only(toy):
    conds = Conditions.from_raw(toy.specs, TARGET, 50)
    probs = toy.probs[1 * 3 + 1]
    best = (probs == probs.max()).nonzero().flatten()  # the shape's and the colour's token (a tie)
    kw = {"specs": toy.specs}
    out = Masked(toy.vocab, order="random", top_k=1).sample(
        toy, "cond(shape, color)", conds, (10,), 10, generator=torch.Generator().manual_seed(0), **kw)
    assert bool(torch.isin(out.samples, best).all())
    plain = Masked(toy.vocab, order="random").sample(
        toy, "cond(shape, color)", conds, (10,), 10, generator=torch.Generator().manual_seed(0), **kw)
    assert not bool(torch.isin(plain.samples, best).all())  # without top-k other tokens are drawn


def test_remasking_puts_tokens_back_yet_ends_fully_committed_and_keeps_the_prompt(toy):
    conds = Conditions.from_raw(toy.specs, TARGET, 40)
    fam = Masked(toy.vocab, order="random", remask=0.2)
    init = torch.full((40, 12), toy.mask_id)
    init[:, 0] = 0  # a given token: never remasked
    seen = []
    out = fam.sample(toy, "cond(shape, color)", conds, (12,), 8, specs=toy.specs, init=init,
                     generator=torch.Generator().manual_seed(0),
                     callback=lambda i, x, o: seen.append(x.clone()))
    assert int((out.samples == toy.mask_id).sum()) == 0 and bool((out.samples[:, 0] == 0).all())
    assert all(bool((x[:, 0] == 0).all()) for x in seen)
    # a position that held a token after one step is masked again after a later one
    back = any(bool(((a != toy.mask_id) & (b == toy.mask_id)).any()) for a, b in itertools.pairwise(seen))
    assert back
    none = []
    Masked(toy.vocab, order="random").sample(toy, "cond(shape, color)", conds, (12,), 8, specs=toy.specs,
                                             init=init,
                                             generator=torch.Generator().manual_seed(0),
                                             callback=lambda i, x, o: none.append(x.clone()))
    assert not any(bool(((a != toy.mask_id) & (b == toy.mask_id)).any()) for a, b in itertools.pairwise(none))


def test_stratified_mask_rates_are_evenly_spaced():
    fam = Masked(10, stratified=True)
    t = fam._mask_rates(8, torch.Generator().manual_seed(0), torch.device("cpu")).sort().values
    torch.testing.assert_close(t.diff(), torch.full((7,), 1 / 8), atol=1e-6, rtol=0)
    assert float(t.min()) >= fam.t_min and float(t.max()) < 1


@pytest.mark.parametrize("kwargs, match", [({"top_k": 0}, "top_k"), ({"remask": 1.0}, "remask"),
                                           ({"remask": -0.1}, "remask")])
def test_bad_sampler_options_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Masked(10, **kwargs)


def test_left_to_right_order_commits_a_growing_prefix(toy):
    conds = Conditions.from_raw(toy.specs, TARGET, 6)
    seen = []
    out = Masked(toy.vocab, order="left_to_right").sample(
        toy, "cond(shape, color)", conds, (12,), 5, specs=toy.specs,
        generator=torch.Generator().manual_seed(0), callback=lambda i, x, o: seen.append(x != toy.mask_id))
    assert int((out.samples == toy.mask_id).sum()) == 0
    for held in seen:  # [B, L]: tokens at the first k positions, masks after them
        assert bool((held[:, 1:] <= held[:, :-1]).all()) and 0 < int(held[0].sum()) <= 12
    assert [int(h[0].sum()) for h in seen] == sorted(int(h[0].sum()) for h in seen)
    with pytest.raises(ValueError, match="'left_to_right'"):
        Masked(10, order="right_to_left")
