"""Logit CFG against transformers' classifier-free-guidance logits processors."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.generation.logits_process import (
    ClassifierFreeGuidanceLogitsProcessor,
    UnbatchedClassifierFreeGuidanceLogitsProcessor,
)

from framework.core.conditions import Conditions, ConditionSpec
from framework.guidance import DiscreteSpaces, Guider, Renormalize
from framework.guidance import presets as G

SPECS = {"prompt": ConditionSpec("prompt", labels=("p",))}


def _guided(expr, cond_logits, uncond_logits, output_space):
    def model(x, t, c):
        keep = c.present["prompt"][:, None]
        n = x.shape[0] // cond_logits.shape[0]
        return torch.where(keep, cond_logits.repeat(n, 1), uncond_logits.repeat(n, 1))

    g = Guider(expr, model, native_space="logits", converter=DiscreteSpaces(), specs=SPECS,
               output_space=output_space)
    B = cond_logits.shape[0]
    return g.step(torch.zeros(B, 1), torch.zeros(B), 0.0, Conditions.from_raw(SPECS, {"prompt": "p"}, B),
                  g.new_state()).denoise


@pytest.mark.parametrize("w", [1.5, 3.0, 7.0])  # transformers refuses w <= 1
def test_batched_logit_cfg_matches_the_processor(w):
    g = torch.Generator().manual_seed(0)
    cond, uncond = torch.randn(2, 4, 50, generator=g).unbind(0)
    theirs = ClassifierFreeGuidanceLogitsProcessor(w)(torch.zeros(4, 3, dtype=torch.long),
                                                      torch.cat([cond, uncond]))
    torch.testing.assert_close(_guided(G.cfg("prompt", w), cond, uncond, "logits"), theirs)
    # on log-probabilities the distribution is the same once renormalised
    ours = _guided(Renormalize(G.cfg("prompt", w)), cond, uncond, "logprobs")
    torch.testing.assert_close(ours, torch.log_softmax(theirs, -1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("w", [1.5, 3.0])
def test_unbatched_processor_with_a_gpt2_model(w):
    torch.manual_seed(0)
    lm = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=64, n_positions=64)).eval()
    input_ids = torch.randint(0, 64, (3, 7), generator=torch.Generator().manual_seed(1))
    uncond_ids = torch.randint(0, 64, (3, 2), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        scores = lm(input_ids).logits[:, -1]
        theirs = UnbatchedClassifierFreeGuidanceLogitsProcessor(w, lm, unconditional_ids=uncond_ids)(
            input_ids, scores.clone())

        def model(x, t, c):  # present rows read the prompt, absent rows the unconditional ids
            cond = lm(input_ids).logits[:, -1]
            uncond = lm(uncond_ids).logits[:, -1]
            keep = c.present["prompt"][:, None]
            n = x.shape[0] // 3
            return torch.where(keep, cond.repeat(n, 1), uncond.repeat(n, 1))

        g = Guider(G.cfg("prompt", w), model, native_space="logits", converter=DiscreteSpaces(), specs=SPECS,
                   output_space="logprobs")
        ours = g.step(torch.zeros(3, 1), torch.zeros(3), 0.0, Conditions.from_raw(SPECS, {"prompt": "p"}, 3),
                      g.new_state()).denoise
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_logprob_guidance_ignores_per_branch_constants():
    g = torch.Generator().manual_seed(0)
    cond, uncond = torch.randn(2, 2, 30, generator=g).unbind(0)
    a = _guided(G.cfg("prompt", 3.0), cond, uncond, "logprobs")
    b = _guided(G.cfg("prompt", 3.0), cond + 4.0, uncond - 7.0, "logprobs")
    torch.testing.assert_close(a, b)
