"""Planner overhead: a guided step vs the raw batched forward of the same branches.

For a transformer-sized callable (the shared backbone: 4 blocks, width 256, 64 tokens) and three
guidance expressions — ``cfg`` (2 branches), ``nested`` over 2 conditions (3), ``independent``
over 3 conditions (4) — measure, side by side in one run:

* **raw**: the network called once on inputs already stacked for those branches;
* **guided**: ``Guider.step`` end to end (plan, stack inputs and conditions, the same single
  forward, split, combine, statistics).

The ratio guided / raw is the engine's overhead. Target: ≤ 1.05 at batch ≥ 8.

    python benchmarks/planner_overhead.py [--out benchmarks/results] [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, interleaved, main, write

from framework.core.conditions import Conditions, ConditionSpec
from framework.guidance import Guider, VPSpaces
from framework.guidance import presets as G
from framework.nn import Backbone, BackboneConfig

TARGET = 1.05
SPECS = {n: ConditionSpec(n, labels=tuple("abcd")) for n in ("shape", "color", "size")}
CASES = {"cfg (2 branches)": G.cfg("shape", 5.0),
         "nested, 2 conditions (3 branches)": G.nested(["shape", "color"], [2.0, 5.0]),
         "independent, 3 conditions (4 branches)": G.independent(["shape", "color", "size"], [2.0, 3.0, 4.0])}


def build_model(dim: int = 256, depth: int = 4, tokens: int = 64, in_dim: int = 16) -> Backbone:
    torch.manual_seed(0)
    cfg = BackboneConfig(seq_len=tokens, in_dim=in_dim, dim=dim, depth=depth, heads=4,
                         conditions=tuple(SPECS.values()))
    return Backbone(cfg).eval()


def measure(model: Backbone, expr, batch: int, reps: int, tokens: int, in_dim: int) -> dict:
    """Time one guided step and the raw forward of its branches; check they agree."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, tokens, in_dim, generator=g)
    t = torch.full((batch,), 500.0)
    conds = Conditions.from_raw(SPECS, {"shape": "a", "color": "b", "size": "c"}, batch)
    guider = Guider(expr, model, native_space="eps",
                    converter=VPSpaces(lambda tt: (torch.full(tt.shape, 0.6), torch.full(tt.shape, 0.8))),
                    specs=SPECS)
    state = guider.new_state()
    (branches,) = guider.plan(0.5, state).values()
    k = len(branches)
    xs, ts = x.repeat(k, 1, 1), t.repeat(k)
    cs = Conditions.cat([guider._branch_conditions(b, conds, 0.5, state, {}) for b in branches])
    with torch.inference_mode():
        raw = model(xs, ts, cs)
        out = guider.step(x, t, 0.5, conds, state)
        coefs = expr.coefficients(0.5)
        manual = sum(coefs[b] * raw[i * batch:(i + 1) * batch] for i, b in enumerate(branches))
        max_diff = float((out.denoise - manual).abs().max())
        times = interleaved({"raw": lambda: model(xs, ts, cs),
                             "guided": lambda: guider.step(x, t, 0.5, conds, state)}, reps)
    return {"branches": k, "nfe": out.stats.nfe, "forward_calls": out.stats.forward_calls,
            "raw_ms": times["raw"] * 1e3, "guided_ms": times["guided"] * 1e3,
            "ratio": times["guided"] / times["raw"], "max_abs_diff_vs_manual": max_diff}


def run(out: Path, quick: bool = False, threads: int = 2, dim: int = 256, depth: int = 4, tokens: int = 64,
        in_dim: int = 16, batches: tuple[int, ...] = (1, 8, 16)) -> dict:
    torch.set_num_threads(threads)
    model = build_model(dim, depth, tokens, in_dim)
    reps = 5 if quick else 40
    results = []
    for label, expr in CASES.items():
        for batch in batches:
            r = measure(model, expr, batch, reps, tokens, in_dim)
            results.append({"case": label, "batch": batch, **r,
                            "meets_target": None if batch < 8 else r["ratio"] <= TARGET})
    payload = {"benchmark": "planner_overhead", "target_ratio_at_batch_ge_8": TARGET,
               "model": {"dim": dim, "depth": depth, "tokens": tokens, "in_dim": in_dim,
                         "parameters": sum(p.numel() for p in model.parameters())},
               "reps": reps, "environment": environment(), "results": results}
    write(out, "planner_overhead", payload, table(payload))
    return payload


def table(payload: dict) -> str:
    lines = [f"Planner overhead (model: {payload['model']['parameters']:,} parameters, "
             f"{payload['environment']['torch_threads']} threads, median of {payload['reps']} reps)", "",
             "| guidance | batch | NFE | forwards | raw ms | guided ms | guided / raw | ≤ 1.05? |",
             "|---|---|---|---|---|---|---|---|"]
    for r in payload["results"]:
        ok = "n/a (batch < 8)" if r["meets_target"] is None else ("yes" if r["meets_target"] else "NO")
        lines.append(f"| {r['case']} | {r['batch']} | {r['nfe']} | {r['forward_calls']} | "
                     f"{r['raw_ms']:.2f} | {r['guided_ms']:.2f} | {r['ratio']:.3f} | {ok} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(__doc__, run, table)
