"""A BOS position for shifted masked models (``bos``) and clean-context attention
(``attention: clean_causal`` → ``BackboneConfig.clean_context``): decoding left to right one token
per step asks the network exactly what an autoregressive network with the same weights is asked,
while a masked position still reads unmasked tokens on both sides."""

import pytest
import torch

from framework.core.conditions import Conditions, ConditionSpec
from framework.generators import Masked
from framework.model.generative import GenerativeModel
from framework.nn import Backbone, BackboneConfig

V, L = 11, 9
SPECS = {"genre": ConditionSpec("genre", labels=("a", "b"))}


def _conds(B: int) -> Conditions:
    return Conditions.from_raw(SPECS, {"genre": torch.arange(B) % 2}, B)


def _active(model: Backbone) -> Backbone:
    """adaLN-Zero starts every block as the identity; give the gates weight so blocks matter."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ada" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


def _pair() -> tuple[Backbone, Backbone]:
    """An autoregressive backbone (BOS id V, L + 1 positions) and a clean-context masked one
    with its weights (mask id V, BOS slot at position 0), the time input a no-op."""
    torch.manual_seed(0)
    common = dict(seq_len=L + 1, vocab_size=V + 1, out_dim=V, dim=32, depth=2, heads=4,
                  conditions=tuple(SPECS.values()))
    ar = _active(Backbone(BackboneConfig(time=False, causal=True, **common)))
    masked = Backbone(BackboneConfig(time_scale=1000.0, clean_context=V, prefix=1, **common))
    missing = masked.load_state_dict(ar.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("time_mlp.") for k in missing)
    with torch.no_grad():
        masked.time_mlp[-1].weight.zero_()
        masked.time_mlp[-1].bias.zero_()
    return ar, masked.eval()


def test_left_to_right_steps_ask_what_the_autoregressive_network_is_asked():
    ar, masked = _pair()
    x = torch.randint(0, V, (4, L), generator=torch.Generator().manual_seed(1))
    fam = Masked(V, shift=True, bos=True, attention="clean_causal")
    with torch.no_grad():
        want = ar(torch.cat([torch.full((4, 1), V), x], 1)[:, :-1], None, _conds(4))  # [B, L, V]
        for k in range(L):  # the prefix x[:k] clean, token k on masked: predict token k
            xt = x.clone()
            xt[:, k:] = V
            got = fam.align(masked(fam.network_input(xt), torch.rand(4), _conds(4)))
            assert torch.allclose(got[:, k], want[:, k], atol=1e-5)
    full = Backbone(BackboneConfig(**{**masked.cfg.__dict__, "clean_context": None, "prefix": 0}))
    full.load_state_dict(masked.state_dict())
    xt = x.clone()
    xt[:, 4:] = V
    with torch.no_grad():  # bidirectional attention over the masks: not the AR network's answer
        got = fam.align(full.eval()(fam.network_input(xt), torch.rand(4), _conds(4)))
    assert not torch.allclose(got[:, 4], want[:, 4], atol=1e-3)


def test_masked_positions_read_both_sides_and_pass_nothing_on():
    _, net = _pair()
    x = torch.randint(0, V, (1, L + 1), generator=torch.Generator().manual_seed(2))
    x[0, 0] = V  # the BOS slot (position 0 is never treated as masked)
    x[0, 3:6] = V  # masked
    conds, t = _conds(1), torch.rand(1)
    other = x.clone()
    other[0, 7] = (x[0, 7] + 1) % V  # a clean token to the right of the masked span changes
    with torch.no_grad():
        a, b = net(x, t, conds), net(other, t, conds)
        left = [0, 1, 2, 6]
        assert torch.allclose(a[0, left], b[0, left], atol=1e-6)  # clean positions: causal
        for j in (3, 4, 5):  # each masked position reads the token to its right
            assert not torch.allclose(a[0, j], b[0, j], atol=1e-4)
        net.pos[3:6] += torch.randn(3, net.cfg.dim, generator=torch.Generator().manual_seed(3))
        c = net(x, t, conds)
    clean = [0, 1, 2, 6, 7, 8, 9]
    assert torch.allclose(a[0, clean], c[0, clean], atol=1e-6)  # ... and no clean position sees it
    assert not torch.allclose(a[0, 3:6], c[0, 3:6], atol=1e-4)


def test_bos_layout_and_errors():
    fam = Masked(V, shift=True, bos=True)
    x = torch.randint(0, V, (3, L), generator=torch.Generator().manual_seed(3))
    assert fam.extra_positions == 1
    assert torch.equal(fam.network_input(x)[:, 0], torch.full((3,), V))
    assert torch.equal(fam.network_input(x)[:, 1:], x)
    out = torch.randn(3, L + 1, V)
    assert torch.equal(fam.align(out), out[:, :-1])  # position i predicts token i
    x_in, _, counts = fam.training_inputs(x, torch.Generator().manual_seed(4))
    assert x_in.shape == (3, L + 1) and counts.shape == (3, L + 1) and not counts[:, -1].any()
    assert torch.equal(counts[:, :-1], x_in[:, 1:] == V)
    with pytest.raises(ValueError, match=r"bos .*needs shift"):
        Masked(V, bos=True)
    with pytest.raises(ValueError, match="attention must be"):
        Masked(V, attention="causal")
    with pytest.raises(ValueError, match="clean_context needs a non-causal"):
        BackboneConfig(seq_len=4, vocab_size=V, causal=True, clean_context=V)


def test_a_bos_model_has_one_more_position_and_trains():
    model = GenerativeModel(family="masked", shape=(L,), conditions=[{"name": "genre", "labels": ["a", "b"]}],
                            family_args={"vocab_size": V, "shift": True, "bos": True,
                                         "attention": "clean_causal", "order": "left_to_right"},
                            backbone={"dim": 32, "depth": 1, "heads": 4})
    assert model.backbone.cfg.seq_len == L + 1 and model.backbone.cfg.clean_context == V
    x = torch.randint(0, V, (4, L))
    loss = model.family.loss(model.backbone, x, _conds(4), torch.Generator().manual_seed(5))
    assert torch.isfinite(loss) and loss > 0
    out = model.sample({"genre": "a"}, "cfg(genre, 2)", n=2, steps=L, seed=0)
    assert out.samples.shape == (2, L) and bool((out.samples < V).all())
