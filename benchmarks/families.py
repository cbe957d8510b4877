"""Samples/s and NFE for each generator family × guidance preset, one fixed small backbone.

Every family runs the shared backbone (width 64, 2 blocks) on its toy data shape — 2-D points
(one continuous token) for diffusion and flow, 12-token sequences for masked and
autoregressive — with random weights (speed does not depend on training). For each guidance:
total NFE, NFE per step, forward calls per step and samples/s, plus samples/s relative to the
same family's unguided sampling. Samples/s is given per second of wall time and per second of
the process's CPU time: with one thread the second does not count waiting for a core that other
processes hold, so it stays comparable on a busy machine.

    python benchmarks/families.py [--out benchmarks/results] [--quick]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, main, write

from framework.evaluation import markdown_table
from framework.training.module import GenerativeModule

PAIR = ("shape", "color")
CONDITIONS = [{"name": "shape", "labels": ["circle", "square", "triangle", "star"]},
              {"name": "color", "labels": ["red", "green", "blue"]}]
FAMILIES = {"diffusion": ({}, [1, 2], 20), "flow": ({}, [1, 2], 20),
            # reuse off: this table prices guidance per evaluated step; masked_reuse.py measures reuse
            "masked": ({"vocab_size": 12, "reuse_unchanged": False}, [12], 12),
            "autoregressive": ({"vocab_size": 12}, [12], 12)}
GUIDANCE = {
    "none (w=1)": "cond(shape, color)",
    "cfg": "cfg((shape, color), 3)",
    "nested": "nested([shape, color], [2, 4])",
    "independent": "independent([shape, color], [2, 2])",
    "interval": "interval((shape, color), 3, 0.3, 0.7)",
    "apg": "apg((shape, color), 6, space=x0)",
    "adaptive": "adaptive(cfg((shape, color), 3), 0.995)",  # per sample (the default)
    "adaptive (per batch)": "adaptive(cfg((shape, color), 3), 0.995, per_sample=False)",
}
CONTINUOUS_ONLY = {"apg"}


def run(out: Path, quick: bool = False, threads: int = 2, batch: int = 64) -> dict:
    torch.set_num_threads(threads)
    rows = []
    for family, (fargs, shape, steps) in FAMILIES.items():
        torch.manual_seed(0)
        model = GenerativeModule(family=family, family_args=fargs, shape=shape, conditions=CONDITIONS,
                                 backbone={"dim": 64, "depth": 2, "heads": 4}).eval()
        conds = model.conditions({"shape": "square", "color": "green"}, batch)
        base = None
        for label, text in GUIDANCE.items():
            if label in CONTINUOUS_ONLY and family in ("masked", "autoregressive"):
                continue
            model.sample(conds, text, steps=steps, seed=0)  # warm-up
            best = best_cpu = float("inf")
            for _ in range(1 if quick else 3):
                start, start_cpu = time.perf_counter(), time.process_time()
                res = model.sample(conds, text, steps=steps, seed=0)
                best = min(best, time.perf_counter() - start)
                best_cpu = min(best_cpu, time.process_time() - start_cpu)
            sps, sps_cpu = batch / best, batch / max(best_cpu, 1e-9)
            base = (sps, sps_cpu) if base is None else base
            rows.append({"family": family, "guidance": label, "expression": text, "steps": len(res.stats),
                         "nfe": res.nfe, "nfe_per_step": res.nfe / len(res.stats),
                         "forward_calls_per_step": sum(s.forward_calls for s in res.stats) / len(res.stats),
                         "samples_per_s": sps, "relative_to_unguided": sps / base[0],
                         "samples_per_cpu_s": sps_cpu, "relative_to_unguided_cpu": sps_cpu / base[1]})
    payload = {"benchmark": "families", "batch": batch, "environment": environment(), "rows": rows}
    write(out, "families", payload, table(payload))
    return payload


def table(payload: dict) -> str:
    header = ["family", "guidance", "steps", "NFE", "NFE/step", "forwards/step", "samples/s", "vs unguided",
              "samples/CPU-s", "vs unguided (CPU)"]
    rows = [[r["family"], r["guidance"], r["steps"], r["nfe"], f"{r['nfe_per_step']:.2f}",
             f"{r['forward_calls_per_step']:.0f}", f"{r['samples_per_s']:.0f}",
             f"{r['relative_to_unguided']:.2f}", f"{r['samples_per_cpu_s']:.0f}",
             f"{r['relative_to_unguided_cpu']:.2f}"] for r in payload["rows"]]
    return (f"Samples/s per family × guidance (batch {payload['batch']}; backbone width 64, 2 blocks)\n\n"
            + markdown_table(header, rows, fmt=str))


if __name__ == "__main__":
    main(__doc__, run, table)
