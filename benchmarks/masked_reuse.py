"""Masked family: reusing the network's output on steps that commit no token.

    python benchmarks/masked_reuse.py [--out benchmarks/results] [--quick] [--threads N]

With more sampling steps than sequence positions, the cosine unmasking schedule commits no token
on many steps: the network would see exactly the inputs of the step before. ``Masked`` reuses
that output (``reuse_unchanged=True``, the default). On the shipped masked text checkpoint
(64 BPE tokens; ``run(models=...)`` adds the 64-token shapes model) under CFG this runs each step
count with and without reuse, from the same seed, checks the samples are identical, and reports the network
evaluations actually run and the wall time (median of interleaved repetitions).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, main, write

from framework.evaluation import markdown_table
from framework.training.module import load

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"shakespeare_masked": ("recipes/text/checkpoints/shakespeare_masked.ckpt", {"genre": "comedy"},
                                 "cfg(genre, 3)"),
          "shapes_masked": ("recipes/image/checkpoints/shapes_masked.ckpt",
                            {"shape": "circle", "color": "red"}, "cfg((shape, color), 2)")}


def run(out: Path, quick: bool = False, threads: int = 2, n: int = 8,
        models: tuple[str, ...] = ("shakespeare_masked",), steps_list: tuple[int, ...] = (64, 128, 256)
        ) -> dict:
    torch.set_num_threads(threads)
    rows = []
    for name in models:
        path, raw, guidance = MODELS[name]
        model = load(str(ROOT / path))
        length = model.shape[0]
        for steps in ((16,) if quick else steps_list):
            def sample(reuse: bool, steps: int = steps, model=model, raw=raw, guidance=guidance):
                model.family.reuse_unchanged = reuse
                return model.sample(raw, guidance, n=n, steps=steps, seed=0)
            outs = {reuse: sample(reuse) for reuse in (False, True)}
            times: dict[bool, list[float]] = {False: [], True: []}
            for r in range(1 if quick else 2):
                for reuse in (False, True) if r % 2 == 0 else (True, False):
                    start = time.perf_counter()
                    sample(reuse)
                    times[reuse].append(time.perf_counter() - start)
            plain, fast = outs[False], outs[True]
            rows.append({"model": name, "length": length, "steps": steps, "guidance": guidance, "n": n,
                         "identical": bool(torch.equal(plain.samples, fast.samples)),
                         "nfe_plain": plain.nfe, "nfe_reuse": fast.nfe,
                         "cached": sum(s.cached for s in fast.stats),
                         "seconds_plain": statistics.median(times[False]),
                         "seconds_reuse": statistics.median(times[True]),
                         "speedup": statistics.median(times[False]) / statistics.median(times[True])})
            print(rows[-1], flush=True)
        model.family.reuse_unchanged = True
    payload = {"benchmark": "masked_reuse", "environment": environment(), "rows": rows}
    write(out, "masked_reuse", payload, table(payload))
    return payload


def table(payload: dict) -> str:
    header = ["model", "tokens", "steps", "NFE without → with reuse", "identical samples", "s without",
              "s with", "speed-up"]
    rows = [[r["model"], r["length"], r["steps"], f"{r['nfe_plain']} → {r['nfe_reuse']}",
             "yes" if r["identical"] else "NO", f"{r['seconds_plain']:.2f}", f"{r['seconds_reuse']:.2f}",
             f"{r['speedup']:.2f}×"] for r in payload["rows"]]
    return ("Masked sampling with and without output reuse (CFG; same seed; median of interleaved runs)\n\n"
            + markdown_table(header, rows, fmt=str))


if __name__ == "__main__":
    main(__doc__, run, table)
