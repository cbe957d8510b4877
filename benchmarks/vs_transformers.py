"""Guided decoding: our engine vs transformers' ``generate(guidance_scale=...)`` on the same GPT-2.

A GPT-2 config (random weights, built offline) with two categorical conditions as prefix
tokens. Both sides decode 256 tokens greedily under CFG with the same conditional and
unconditional prompts, so their tokens must be identical (checked). transformers evaluates the
unconditional branch with a second model call per token
(``UnbatchedClassifierFreeGuidanceLogitsProcessor``); our engine batches both branches into one
forward, each with its own rows of one KV cache.

Reported: tokens/s of each and ours ÷ theirs (target ≥ 1.0).

    python benchmarks/vs_transformers.py [--out benchmarks/results] [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, interleaved, main, write

from framework.core.conditions import Conditions, ConditionSpec
from framework.generators import Autoregressive
from framework.guidance import presets as G
from framework.nn import CausalLMAdapter

TARGET = 1.0
V = 512
SPECS = (ConditionSpec("genre", labels=("comedy", "tragedy", "history")),
         ConditionSpec("speaker", labels=("a", "b", "c", "d")))
SPEC_MAP = {s.name: s for s in SPECS}


def run(out: Path, quick: bool = False, threads: int = 2, tokens: int = 256, batch: int = 4,
        layers: int = 4, width: int = 256, w: float = 3.0) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=CausalLMAdapter.vocab_needed(V, SPECS), n_positions=tokens + 8, n_embd=width,
                     n_layer=layers, n_head=4, bos_token_id=V, eos_token_id=V, pad_token_id=V + 1)
    lm = GPT2LMHeadModel(cfg).eval()
    model = CausalLMAdapter(lm, V, SPECS)
    genres = ["comedy", "tragedy", "history"] * batch
    conds = Conditions.from_raw(SPEC_MAP, {"genre": genres[:batch], "speaker": "b"}, batch)
    null = Conditions(dict(conds.values), {n: torch.zeros(batch, dtype=torch.bool) for n in SPEC_MAP})
    bos = torch.full((batch, 1), V)
    cond_ids, uncond_ids = torch.cat([model.prefix(conds), bos], 1), torch.cat([model.prefix(null), bos], 1)
    family = Autoregressive(V, temperature=0)
    expr = G.cfg(("genre", "speaker"), w)
    suppress = list(range(V, cfg.vocab_size))

    def ours():
        return family.sample(model, expr, conds, (tokens,), tokens, specs=SPEC_MAP).samples

    def theirs():
        return lm.generate(cond_ids, attention_mask=torch.ones_like(cond_ids), max_new_tokens=tokens,
                           min_new_tokens=tokens, do_sample=False,
                           guidance_scale=w, negative_prompt_ids=uncond_ids,
                           negative_prompt_attention_mask=torch.ones_like(uncond_ids),
                           suppress_tokens=suppress)[:, cond_ids.shape[1]:]

    with torch.inference_mode():
        same = bool(torch.equal(ours(), theirs()))
        times = interleaved({"ours": ours, "transformers": theirs}, reps=2 if quick else 5, warmup=1)
    n = batch * tokens
    result = {"tokens": tokens, "batch": batch, "guidance_scale": w, "identical_tokens": same,
              "ours_tokens_per_s": n / times["ours"], "transformers_tokens_per_s": n / times["transformers"],
              "ours_s": times["ours"], "transformers_s": times["transformers"]}
    result["speed_ratio"] = result["ours_tokens_per_s"] / result["transformers_tokens_per_s"]
    result["meets_target"] = result["speed_ratio"] >= TARGET and same
    payload = {"benchmark": "vs_transformers", "target_ratio": TARGET,
               "model": {"n_layer": layers, "n_embd": width, "vocab": cfg.vocab_size,
                         "parameters": sum(p.numel() for p in lm.parameters())},
               "environment": environment(), "result": result}
    write(out, "vs_transformers", payload, table(payload))
    return payload


def table(payload: dict) -> str:
    r = payload["result"]
    return (f"Guided greedy decoding, GPT-2 ({payload['model']['parameters']:,} parameters), "
            f"{r['batch']} × {r['tokens']} tokens, CFG w={r['guidance_scale']:g}\n\n"
            "| | tokens/s | seconds |\n|---|---|---|\n"
            f"| polyguide (branches batched, per-branch KV caches) | {r['ours_tokens_per_s']:.0f} | "
            f"{r['ours_s']:.2f} |\n"
            f"| transformers generate(guidance_scale) | {r['transformers_tokens_per_s']:.0f} | "
            f"{r['transformers_s']:.2f} |\n\n"
            f"ours ÷ transformers: **{r['speed_ratio']:.2f}×** (target ≥ {payload['target_ratio']:g}); "
            f"identical tokens: {r['identical_tokens']}\n")


if __name__ == "__main__":
    main(__doc__, run, table)
