"""The codebook delay pattern and multi-codebook autoregressive decoding."""

import pytest
import torch

from framework.core.conditions import Conditions, ConditionSpec
from framework.generators import Autoregressive
from framework.generators.delay import delay, pad_mask, undelay
from framework.guidance import presets as G
from framework.nn import Backbone, BackboneConfig

SPECS = {"genre": ConditionSpec("genre", labels=("a", "b"))}
V, K = 10, 3


def test_delay_shifts_codebook_k_by_k_frames_and_inverts():
    codes = torch.arange(2 * K * 4).view(2, K, 4) % V
    d = delay(codes, pad=V + 1)
    assert d.shape == (2, K, 4 + K - 1)
    assert d[0, 0].tolist() == [*codes[0, 0].tolist(), V + 1, V + 1]
    assert d[0, 2].tolist() == [V + 1, V + 1, *codes[0, 2].tolist()]
    assert torch.equal(undelay(d), codes)
    assert torch.equal(pad_mask(K, 4), (d[0] == V + 1).T)


def _model(seed=0):
    torch.manual_seed(seed)
    m = Backbone(BackboneConfig(seq_len=16, vocab_size=V + 2, out_dim=V, dim=32, depth=2, heads=4, time=False,
                                causal=True, codebooks=K, conditions=tuple(SPECS.values())))
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "ada" in name:
                p.normal_(0, 0.05)
    return m.eval()


def test_multi_codebook_backbone_shapes_and_kv_cache():
    m = _model()
    x = torch.randint(0, V + 2, (2, 7, K))
    c = Conditions.from_raw(SPECS, {"genre": "a"}, 2)
    with torch.no_grad():
        full = m(x, None, c)
        cache = m.new_cache()
        parts = [m(x[:, :3], None, c, cache=cache)]
        parts += [m(x[:, i:i + 1], None, c, cache=cache) for i in range(3, 7)]
    assert full.shape == (2, 7, K, V)
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"takes tokens \[B, L, 3\]"):
        m(torch.zeros(2, 7, dtype=torch.long), None, c)


def test_guided_multi_codebook_decoding_respects_the_pattern_and_the_cache():
    m = _model(1)
    fam = Autoregressive(V, temperature=0, codebooks=K)
    conds = Conditions.from_raw(SPECS, {"genre": ["a", "b"]}, 2)
    expr = G.cfg("genre", 3.0)
    with torch.no_grad():
        out = fam.sample(m, expr, conds, (K, 5), 5, specs=SPECS)
        # uncached reference over the delayed steps, pads forced where the pattern has them
        x = torch.full((2, 1, K), V)
        pads = pad_mask(K, 5)
        for i in range(5 + K - 1):
            total = 0
            for branch, coef in expr.coefficients(i / (5 + K - 2)).items():
                present = {"genre": torch.full((2,), "genre" in branch.names)}
                logits = m(x, None, Conditions(dict(conds.values), present))[:, -1]
                total = total + coef * torch.log_softmax(logits, -1)
            nxt = torch.where(pads[i], torch.full((2, K), V + 1), total.argmax(-1))
            x = torch.cat([x, nxt[:, None]], 1)
    assert out.samples.shape == (2, K, 5) and out.nfe == 2 * (5 + K - 1)
    assert bool((out.samples < V).all())  # no padding leaks into the codes
    assert torch.equal(out.samples, undelay(x[:, 1:].transpose(1, 2)))


def test_multi_codebook_training_masks_the_padding():
    from framework.training.module import GenerativeModule

    torch.manual_seed(0)
    model = GenerativeModule(family="autoregressive", family_args={"vocab_size": V, "codebooks": K},
                             shape=[K, 6], conditions=[{"name": "genre", "labels": ["a", "b"]}],
                             backbone={"dim": 32, "depth": 2, "heads": 4}, lr=3e-3, warmup_steps=1)
    # codebook k repeats codebook 0 shifted by k: learnable only through the delay pattern's ordering
    base = torch.randint(0, V, (64, 1, 6))
    codes = (base + torch.arange(K).view(1, K, 1)) % V
    conds = Conditions({"genre": torch.zeros(64, dtype=torch.long)})
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss = model.family.loss(model.backbone, codes, conds)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.7 * first, (first, float(loss.detach()))
    out = model.sample({"genre": "a"}, n=4, steps=6, seed=0)
    assert out.samples.shape == (4, K, 6)


def test_the_progress_bar_counts_every_decoding_step_from_the_start(monkeypatch):
    """The bar's total is the K − 1 longer count from the first moment (it used to start at the
    frame count and jump, e.g. 50 → 53), and the bar ends full."""
    import framework.generators.base as base

    bars = []

    class Recording(base.tqdm):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.first_total = self.total
            bars.append(self)

    monkeypatch.setattr(base, "tqdm", Recording)
    fam = Autoregressive(V, temperature=0, codebooks=K)
    conds = Conditions.from_raw(SPECS, {"genre": "a"}, 2)
    with torch.no_grad():
        fam.sample(_model(), G.cfg("genre", 3.0), conds, (K, 5), 5, specs=SPECS, progress=True)
    assert bars[0].first_total == 5 + K - 1 == bars[0].n
