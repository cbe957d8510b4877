"""The adapters use the installed transformers/diffusers APIs as they are now: no deprecation warning.

The project's pytest configuration ignores FutureWarning globally, so this test records warnings
itself (``simplefilter("always")``) and fails on any deprecation raised while our adapters run.
"""

from __future__ import annotations

import warnings

import torch
from diffusers import UNet2DModel
from transformers import GPT2Config, GPT2LMHeadModel

from framework.core.conditions import Conditions, ConditionSpec
from framework.generators import Autoregressive, Diffusion
from framework.guidance import presets as G
from framework.nn import CausalLMAdapter, UNetAdapter, class_embeds_needed

SPECS = (ConditionSpec("shape", labels=("a", "b", "c")),)
SPEC_MAP = {s.name: s for s in SPECS}
DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def _deprecations(run) -> list[str]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run()
    return [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in seen
            if issubclass(w.category, DEPRECATIONS)]


def test_causal_lm_adapter_raises_no_deprecation_warning():
    V = 10
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=CausalLMAdapter.vocab_needed(V, SPECS), n_positions=32, n_embd=16, n_layer=1,
                     n_head=2, bos_token_id=V, eos_token_id=V)
    lm = GPT2LMHeadModel(cfg).eval()
    model = CausalLMAdapter(lm, V, SPECS)
    conds = Conditions.from_raw(SPEC_MAP, {"shape": ["a", "b"]}, 2)

    def run():
        with torch.no_grad():  # cached decoding, a branch joining mid-way, and left padding
            Autoregressive(V, temperature=0).sample(model, G.interval("shape", 3.0, 0.3, 0.6), conds, (5,), 5,
                                                    specs=SPEC_MAP, init=[[1, 2, 3], [4]])

    assert _deprecations(run) == []


def test_unet_adapter_raises_no_deprecation_warning():
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
                       num_class_embeds=class_embeds_needed(SPECS)).eval()
    conds = Conditions.from_raw(SPEC_MAP, {"shape": "b"}, 2)

    def run():
        with torch.no_grad():
            Diffusion().sample(UNetAdapter(unet, SPECS), G.cfg("shape", 3.0), conds, (3, 8, 8), 2,
                               specs=SPEC_MAP, generator=torch.Generator().manual_seed(0))

    assert _deprecations(run) == []
