"""The shared backbone: per-row perturbations, KV cache, conditioning."""

import math

import pytest
import torch

from framework.core.conditions import Conditions, ConditionSpec
from framework.guidance import AttnBlur, AttnIdentity, Guider, Perturbations, SkipLayers, VPSpaces
from framework.guidance import presets as G
from framework.nn import Backbone, BackboneConfig

SPECS = (ConditionSpec("label", labels=("a", "b", "c")), ConditionSpec("style", kind="vector", dim=6))
SPEC_MAP = {s.name: s for s in SPECS}


def _active(model: Backbone, seed: int = 0) -> Backbone:
    """adaLN-Zero starts every block as the identity; give the gates weight so blocks matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ada" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def _continuous(**kw) -> Backbone:
    torch.manual_seed(0)
    return _active(Backbone(BackboneConfig(seq_len=12, in_dim=4, dim=32, depth=3, heads=4,
                                           conditions=SPECS, **kw)))


def _conds(B: int) -> Conditions:
    style = torch.randn(B, 6, generator=torch.Generator().manual_seed(1))
    return Conditions.from_raw(SPEC_MAP, {"label": ["a", "b", "c", "a"][:B], "style": style}, B)


def test_small_enough_for_tests():
    assert sum(p.numel() for p in _continuous().parameters()) < 1_000_000


@pytest.mark.parametrize("p", [AttnIdentity(), AttnIdentity((0, 2)), AttnBlur((1,), 1.5),
                               AttnBlur(None, math.inf), SkipLayers((1,))])
def test_perturbation_acts_per_row_inside_one_batch(p):
    model = _continuous()
    x, t, c = torch.randn(4, 12, 4), torch.tensor([3.0, 50.0, 200.0, 999.0]), _conds(4)
    rows = torch.tensor([False, True, False, True])
    pert = Perturbations(torch.where(rows, 0, -1), (p,))
    with torch.no_grad():
        mixed = model(x, t, c, perturbations=pert)
        plain = model(x, t, c)
        alone = model(x, t, c, perturbations=Perturbations(torch.zeros(4, dtype=torch.long), (p,)))
    torch.testing.assert_close(mixed[~rows], plain[~rows])
    torch.testing.assert_close(mixed[rows], alone[rows], rtol=1e-5, atol=1e-5)
    assert (mixed[rows] - plain[rows]).abs().max() > 1e-4  # the perturbation does something


def test_attention_identity_is_a_no_op_for_a_single_token():
    model = Backbone(BackboneConfig(seq_len=1, in_dim=4, dim=32, depth=2, heads=4, conditions=SPECS))
    _active(model)
    x, t, c = torch.randn(2, 1, 4), torch.ones(2), _conds(2)
    with torch.no_grad():
        pert = Perturbations(torch.zeros(2, dtype=torch.long), (AttnIdentity((0, 1)),))
        torch.testing.assert_close(model(x, t, c, perturbations=pert), model(x, t, c))


def test_attention_blur_with_tiny_sigma_is_a_no_op():
    model = _continuous()
    x, t, c = torch.randn(2, 12, 4), torch.ones(2), _conds(2)
    with torch.no_grad():
        pert = Perturbations(torch.zeros(2, dtype=torch.long), (AttnBlur((0, 1, 2), 1e-3),))
        torch.testing.assert_close(model(x, t, c, perturbations=pert), model(x, t, c), rtol=1e-5, atol=1e-5)


def test_skipping_every_block_leaves_only_embedding_and_head():
    model = _continuous()
    x, t, c = torch.randn(2, 12, 4), torch.ones(2), _conds(2)
    with torch.no_grad():
        skipped = model(x, t, c, perturbations=Perturbations(torch.zeros(2, dtype=torch.long),
                                                             (SkipLayers((0, 1, 2)),)))
        depth0 = Backbone(BackboneConfig(seq_len=12, in_dim=4, dim=32, depth=0, heads=4, conditions=SPECS))
        depth0.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("blocks")})
        torch.testing.assert_close(skipped, depth0(x, t, c))


def test_unknown_layer_is_named():
    model = _continuous()
    pert = Perturbations(torch.zeros(2, dtype=torch.long), (AttnIdentity((7,)),))
    with pytest.raises(ValueError, match=r"names block 7, but the backbone has blocks 0..2"):
        model(torch.randn(2, 12, 4), torch.ones(2), _conds(2), perturbations=pert)


def test_conditions_change_the_output_and_absent_rows_use_the_null():
    model = _continuous()
    x, t = torch.randn(2, 12, 4), torch.ones(2)
    c = _conds(2)
    absent = Conditions(dict(c.values), {"label": torch.tensor([False, False]), "style": c.present["style"]})
    other = Conditions({**c.values, "label": torch.tensor([2, 2])},
                       {"label": torch.tensor([False, False]), "style": c.present["style"]})
    with torch.no_grad():
        assert (model(x, t, c) - model(x, t, absent)).abs().max() > 1e-4
        torch.testing.assert_close(model(x, t, absent), model(x, t, other))  # value ignored when absent


def test_sequence_conditions_enter_by_cross_attention():
    specs = (ConditionSpec("prompt", kind="sequence", dim=5),)
    model = _active(Backbone(BackboneConfig(seq_len=6, vocab_size=11, dim=32, depth=2, heads=4,
                                            conditions=specs)))
    x = torch.randint(0, 11, (2, 6))
    a = Conditions({"prompt": torch.randn(2, 3, 5)})
    b = Conditions({"prompt": torch.randn(2, 3, 5)})
    with torch.no_grad():
        assert model(x, torch.ones(2), a).shape == (2, 6, 11)
        assert (model(x, torch.ones(2), a) - model(x, torch.ones(2), b)).abs().max() > 1e-4


def _causal() -> Backbone:
    torch.manual_seed(0)
    return _active(Backbone(BackboneConfig(seq_len=10, vocab_size=17, dim=32, depth=2, heads=4,
                                           time=False, causal=True, conditions=SPECS)))


def test_causal_outputs_ignore_future_tokens():
    model = _causal()
    x = torch.randint(0, 17, (2, 10))
    y = x.clone()
    y[:, 6:] = (y[:, 6:] + 1) % 17
    with torch.no_grad():
        torch.testing.assert_close(model(x, None, _conds(2))[:, :6], model(y, None, _conds(2))[:, :6])


def test_kv_cache_decoding_equals_the_full_forward():
    model = _causal()
    x, c = torch.randint(0, 17, (4, 10)), _conds(4)
    with torch.no_grad():
        full = model(x, None, c)
        cache = model.new_cache()
        steps = [model(x[:, :4], None, c, cache=cache)]  # prefill 4 tokens
        steps += [model(x[:, i:i + 1], None, c, cache=cache) for i in range(4, 7)]
        steps.append(model(x[:, 7:10], None, c, cache=cache))  # a 3-token chunk after the prefix
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)


def test_kv_cache_rows_can_be_sliced_out():
    model = _causal()
    x, c = torch.randint(0, 17, (4, 6)), _conds(4)
    keep = torch.tensor([True, False, True, False])
    with torch.no_grad():
        full = model(x, None, c)
        cache = model.new_cache()
        model(x[:, :5], None, c, cache=cache)
        last = model(x[keep, 5:6], None, c.index(keep), cache=cache.select(keep))
    torch.testing.assert_close(last[:, 0], full[keep, 5], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="exceeds the backbone's seq_len=10"):
        model(torch.zeros(1, 11, dtype=torch.long), None, _conds(1))


def test_guided_pag_step_runs_one_batched_forward():
    model = _continuous()
    calls = []

    def counted(*args, **kw):
        calls.append(args[0].shape[0])
        return model(*args, **kw)

    g = Guider(G.pag(2.0, "label", base=G.cfg("label", 4.0)), counted, native_space="eps",
               converter=VPSpaces(lambda t: (torch.full(t.shape, 0.8), torch.full(t.shape, 0.6))),
               specs=SPEC_MAP)
    with torch.no_grad():
        out = g.step(torch.randn(2, 12, 4), torch.full((2,), 10.0), 0.5,
                     Conditions.from_raw(SPEC_MAP, {"label": "b"}, 2), g.new_state())
    assert out.stats.nfe == 3 and calls == [6] and out.denoise.shape == (2, 12, 4)
