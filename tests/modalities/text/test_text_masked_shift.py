"""The masked family's autoregressive layout (``shift``) and suffix masks (``suffix``), on a toy
next-token network: the output at position ``i`` knows token ``i + 1`` (``x[i + 1] = x[i] + 1 mod V``),
as an autoregressive network's does."""

import torch

from framework.core.conditions import Conditions, ConditionSpec
from framework.generators import Masked

SPECS = {"genre": ConditionSpec("genre", labels=("a", "b"))}  # unused by the toy network
V, L = 6, 12  # L a multiple of V: the chain is cyclic, so the last position also knows token 0


def next_token_net(x: torch.Tensor, t, conditions, perturbations=None) -> torch.Tensor:
    """``[B, L]`` ids → ``[B, L, V]`` logits: at a clean position, certain of the next token."""
    clean = x < V
    peaked = torch.nn.functional.one_hot((x.clamp(max=V - 1) + 1) % V, V).float() * 20.0
    return torch.where(clean[..., None], peaked, torch.zeros(*x.shape, V))


def chains(n: int, gen: torch.Generator) -> torch.Tensor:
    start = torch.randint(0, V, (n, 1), generator=gen)
    return (start + torch.arange(L)) % V


def test_shift_reads_the_prediction_of_token_i_at_position_i_minus_1():
    gen = torch.Generator().manual_seed(0)
    x0, conds = chains(512, gen), Conditions.from_raw(SPECS, {}, 512)
    shifted = Masked(V, shift=True).loss(next_token_net, x0, conds, torch.Generator().manual_seed(1))
    same_place = Masked(V).loss(next_token_net, x0, conds, torch.Generator().manual_seed(1))
    # read at the same position every masked token costs log V; read one position on, only those
    # whose left neighbour is masked too (a share t of them): half of it on average over t
    assert float(same_place) > 1.5 and float(shifted) < 0.65 * float(same_place)


def test_left_to_right_sampling_with_shift_continues_a_prompt_as_the_network_says():
    gen = torch.Generator().manual_seed(0)
    x0 = chains(8, gen)
    init = torch.full_like(x0, V)
    init[:, 0] = x0[:, 0]  # a one-token prompt
    conds = Conditions.from_raw(SPECS, {}, 8)
    for shift, exact in ((True, True), (False, False)):
        fam = Masked(V, order="left_to_right", shift=shift, schedule="linear")  # one token per step
        out = fam.sample(next_token_net, "uncond", conds, (L,), L, specs=SPECS, init=init,
                         generator=torch.Generator().manual_seed(2))
        assert torch.equal(out.samples, x0) is exact


def test_linear_schedule_commits_the_same_number_every_step():
    fam = Masked(V, schedule="linear")
    assert [fam.still_masked(i, 12, 12) for i in range(12)] == list(range(11, -1, -1))
    assert [fam.still_masked(i, 4, 12) for i in range(4)] == [9, 6, 3, 0]


def test_suffix_rows_mask_the_last_ceil_tL_positions():
    x0 = chains(256, torch.Generator().manual_seed(0))
    fam = Masked(V, suffix=1.0)
    xt, t, masked = fam.training_inputs(x0, torch.Generator().manual_seed(3))
    first = L - torch.ceil(t * L).long()
    assert torch.equal(masked, torch.arange(L)[None] >= first[:, None])
    assert torch.equal(xt == V, masked)
    half = Masked(V, suffix=0.5).training_inputs(x0, torch.Generator().manual_seed(3))[2]
    is_suffix = (half.long().diff(dim=1) >= 0).all(1)  # never unmasked after a masked position
    assert 0.3 < float(is_suffix.float().mean()) < 0.8  # about half (random ones can be too)
