"""Masked discrete diffusion on the exact categorical toy."""

import math

import pytest
import torch

from framework.core.conditions import Conditions
from framework.generators import Masked
from framework.guidance import presets as G

TARGET = {"shape": "square", "color": "green"}


def test_random_order_sampling_with_the_exact_model_reproduces_the_data_distribution(toy):
    fam = Masked(toy.vocab, order="random")
    conds = Conditions.from_raw(toy.specs, TARGET, 600)
    out = fam.sample(toy, "cond(shape, color)", conds, (10,), 10, specs=toy.specs,
                     generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(out.samples.reshape(-1), minlength=toy.vocab).double() / out.samples.numel()
    torch.testing.assert_close(freq, toy.probs[1 * 3 + 1], atol=0.015, rtol=0)
    assert int((out.samples == toy.mask_id).sum()) == 0


@pytest.mark.parametrize("order", ["confidence", "random"])
def test_guidance_raises_accuracy_and_costs_the_planned_branches(toy, order, both_right):
    fam = Masked(toy.vocab, order=order)
    conds = Conditions.from_raw(toy.specs, TARGET, 400)
    acc, nfe = {}, {}
    for name, g in [("uncond", "uncond"), ("w=1", "cond(shape, color)"),
                    ("cfg", G.cfg(("shape", "color"), 3.0)),
                    ("independent", G.independent(["shape", "color"], [2.0, 3.0]))]:
        out = fam.sample(toy, g, conds, (12,), 6, specs=toy.specs, generator=torch.Generator().manual_seed(1))
        acc[name], nfe[name] = both_right(toy, out.samples), set(out.branches_per_step)
    assert acc["uncond"] < 0.2 < acc["w=1"]
    assert acc["cfg"] >= acc["w=1"] and acc["independent"] >= acc["w=1"]
    if order == "random":  # confidence order already sharpens at w=1
        assert acc["cfg"] > acc["w=1"] + 0.1, acc
    assert nfe == {"uncond": {1}, "w=1": {1}, "cfg": {2}, "independent": {3}}


def test_cosine_schedule_commits_everything():
    fam = Masked(10)
    assert [fam.still_masked(i, 4, 16) for i in range(4)] == [14, 11, 6, 0]


def test_nll_bound_of_the_exact_model_is_the_exact_nll(toy):
    """MDLM's bound averages autoregressive NLLs over random orders: tight for an exact model."""
    fam = Masked(toy.vocab)
    gen = torch.Generator().manual_seed(0)
    conds = Conditions.from_raw(toy.specs, TARGET, 64)
    x0 = toy.sample_data(conds, 8, gen)
    bound = fam.nll_bound(toy, x0, conds, samples=400, generator=gen).mean()
    exact = -toy.probs[4].log()[x0].sum(1).mean() / 8
    assert float(bound) == pytest.approx(float(exact), rel=0.03)
    # unconditional: log p(x) = log Σ_k p(k) Π_i p(x_i | k)
    none = Conditions.from_raw(toy.specs, {}, 64)
    bound_u = fam.nll_bound(toy, x0, none, samples=400, generator=gen).mean()
    per_k = toy.probs.log()[:, x0].sum(-1)  # [K, B]
    exact_u = -(torch.logsumexp(per_k, 0) - math.log(per_k.shape[0])).mean() / 8
    assert float(bound_u) == pytest.approx(float(exact_u), rel=0.03)
    assert float(bound_u) > float(bound)  # knowing the conditions lowers the NLL


def test_loss_is_the_single_sample_bound(toy):
    fam = Masked(toy.vocab)
    conds = Conditions.from_raw(toy.specs, TARGET, 256)
    x0 = toy.sample_data(conds, 8, torch.Generator().manual_seed(0))
    losses = torch.stack([fam.loss(toy, x0, conds, torch.Generator().manual_seed(s)) for s in range(40)])
    exact = -toy.probs[4].log()[x0].sum(1).mean() / 8
    assert float(losses.mean()) == pytest.approx(float(exact), rel=0.05)


@pytest.mark.parametrize(("call", "message"), [
    (lambda fam, toy, c: fam.loss(toy, torch.rand(2, 4), c), "works on token ids"),
    (lambda fam, toy, c: fam.loss(toy, torch.full((2, 4), 99), c), r"token ids must be in 0..11"),
    (lambda fam, toy, c: fam.sample(toy, "cond(shape)", c, (2, 2), 3, specs=toy.specs), r"shape \(L,\)"),
])
def test_bad_inputs(toy, call, message):
    fam = Masked(toy.vocab)
    with pytest.raises((TypeError, ValueError), match=message):
        call(fam, toy, Conditions.from_raw(toy.specs, TARGET, 2))
