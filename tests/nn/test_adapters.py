"""External networks behind the engine's contract: diffusers U-Nets and transformers causal LMs."""

import pytest
import torch
from diffusers import UNet2DConditionModel, UNet2DModel
from transformers import GPT2Config, GPT2LMHeadModel

from framework.core.conditions import ConditionError, Conditions, ConditionSpec
from framework.generators import Autoregressive, Diffusion
from framework.guidance import Guider
from framework.guidance import presets as G
from framework.nn import CausalLMAdapter, UNetAdapter, class_embeds_needed

SPECS = (ConditionSpec("shape", labels=("a", "b", "c")), ConditionSpec("color", labels=("r", "g")))
SPEC_MAP = {s.name: s for s in SPECS}


def _unet():
    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
                       num_class_embeds=class_embeds_needed(SPECS)).eval()


def test_unet_adapter_guidance_equals_direct_unet_calls():
    unet = _unet()
    model = UNetAdapter(unet, SPECS)
    fam = Diffusion()
    conds = Conditions.from_raw(SPEC_MAP, {"shape": ["a", "c"], "color": "g"}, 2)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([500, 500])
    g = Guider(G.nested(["shape", "color"], [2.0, 3.0]), model, native_space="eps", converter=fam.converter,
               specs=SPEC_MAP)
    with torch.no_grad():
        out = g.step(x, t, 0.5, conds, g.new_state())
        # class id = shape digit + 4 · color digit, where the last digit of each is its null
        u = unet(x, t, class_labels=torch.tensor([3 + 4 * 2, 3 + 4 * 2])).sample
        s = unet(x, t, class_labels=torch.tensor([0 + 4 * 2, 2 + 4 * 2])).sample
        sc = unet(x, t, class_labels=torch.tensor([0 + 4 * 1, 2 + 4 * 1])).sample
    assert out.stats.nfe == 3 and out.stats.forward_calls == 1
    torch.testing.assert_close(out.denoise, u + 2 * (s - u) + 3 * (sc - s), rtol=1e-4, atol=1e-4)


def test_unet_adapter_samples_through_the_diffusion_family():
    model = UNetAdapter(_unet(), SPECS)
    conds = Conditions.from_raw(SPEC_MAP, {"shape": "b", "color": "r"}, 2)
    with torch.no_grad():
        out = Diffusion().sample(model, "cfg((shape, color), 3)", conds, (3, 8, 8), 4, specs=SPEC_MAP,
                                 generator=torch.Generator().manual_seed(0))
    assert out.samples.shape == (2, 3, 8, 8) and out.nfe == 8


def test_unet_adapter_refuses_too_few_class_embeddings_and_perturbations():
    unet = _unet()
    with pytest.raises(ConditionError, match=r"num_class_embeds=12; conditions \['shape', 'color', 'size'\]"):
        UNetAdapter(unet, (*SPECS, ConditionSpec("size", labels=("s", "l"))))
    g = Guider(G.pag(2.0, "shape"), UNetAdapter(unet, SPECS), native_space="eps",
               converter=Diffusion().converter, specs=SPEC_MAP)
    with pytest.raises(ValueError, match="UNetAdapter does not implement in-network perturbations"):
        g.step(torch.randn(1, 3, 8, 8), torch.tensor([10]), 0.0,
               Conditions.from_raw(SPEC_MAP, {"shape": "a"}, 1), g.new_state())


def test_unet2d_condition_model_takes_a_sequence_condition_with_a_learned_null():
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                                layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), norm_num_groups=4,
                                cross_attention_dim=12, attention_head_dim=4).eval()
    model = UNetAdapter(unet, context_condition="text", context_shape=(5, 12))
    spec = {"text": ConditionSpec("text", kind="sequence", dim=12)}
    conds = Conditions.from_raw(spec, {"text": torch.randn(2, 5, 12)}, 2)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([100, 100])
    g = Guider(G.cfg("text", 4.0), model, native_space="eps", converter=Diffusion().converter, specs=spec)
    with torch.no_grad():
        out = g.step(x, t, 0.0, conds, g.new_state())
        c = unet(x, t, encoder_hidden_states=conds.values["text"]).sample
        u = unet(x, t, encoder_hidden_states=torch.zeros(2, 5, 12)).sample  # the null starts at zero
    torch.testing.assert_close(out.denoise, u + 4 * (c - u), rtol=1e-4, atol=1e-4)


V = 20


def _gpt2():
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=CausalLMAdapter.vocab_needed(V, SPECS), n_positions=64, n_embd=32, n_layer=2,
                     n_head=2, bos_token_id=V, eos_token_id=V, pad_token_id=V)
    return GPT2LMHeadModel(cfg).eval()


@pytest.mark.parametrize("w", [1.0, 3.0])
def test_guided_greedy_decoding_matches_transformers_generate(w):
    """Our engine (per-branch KV caches, batched branches) vs ``generate(guidance_scale=w)``."""
    lm = _gpt2()
    model = CausalLMAdapter(lm, V, SPECS)
    conds = Conditions.from_raw(SPEC_MAP, {"shape": ["b", "c"], "color": "r"}, 2)
    with torch.no_grad():
        ours = Autoregressive(V, temperature=0).sample(model, G.cfg(("shape", "color"), w), conds, (12,), 12,
                                                       specs=SPEC_MAP).samples
        bos = torch.full((2, 1), V)
        cond_ids = torch.cat([model.prefix(conds), bos], 1)
        null = Conditions(dict(conds.values), {n: torch.zeros(2, dtype=torch.bool) for n in SPEC_MAP})
        uncond_ids = torch.cat([model.prefix(null), bos], 1)
        kwargs = {} if w == 1.0 else {"guidance_scale": w, "negative_prompt_ids": uncond_ids}
        theirs = lm.generate(cond_ids, max_new_tokens=12, do_sample=False, min_new_tokens=12,
                             suppress_tokens=list(range(V, lm.config.vocab_size)), **kwargs)
    theirs = theirs[:, cond_ids.shape[1]:]
    assert torch.equal(ours, theirs)


def test_hf_cache_rows_follow_branches_in_and_out():
    """An interval makes the unconditional branch join mid-way (prefill) and leave (slice)."""
    lm = _gpt2()
    model = CausalLMAdapter(lm, V, SPECS)
    conds = Conditions.from_raw(SPEC_MAP, {"shape": ["a", "b"], "color": "g"}, 2)
    expr = G.interval(("shape", "color"), 5.0, 0.3, 0.6)
    with torch.no_grad():
        ours = Autoregressive(V, temperature=0).sample(model, expr, conds, (10,), 10, specs=SPEC_MAP).samples
        x = torch.full((2, 1), V)
        for i in range(10):
            total = 0
            for branch, coef in expr.coefficients(i / 9).items():
                present = {n: torch.full((2,), n in branch.names) for n in SPEC_MAP}
                logits = model(x, None, Conditions(dict(conds.values), present))[:, -1]
                total = total + coef * torch.log_softmax(logits, -1)
            x = torch.cat([x, total.argmax(-1, keepdim=True)], 1)
    assert torch.equal(ours, x[:, 1:])
