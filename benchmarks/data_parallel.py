"""Data-parallel throughput: ``polyguide fit`` on 2 processes (Lightning's ``ddp``) vs 1, samples/s.

Each configuration is the real command on a toy recipe, with Lightning's ``ThroughputMonitor``
logging its rolling samples/s (window of 5 steps) to a CSV logger; the figure is the median of the
logged rates after the first window (start-up excluded), without validation. Weak scaling: every
process takes ``--batch`` samples a step, so 2 processes train twice the samples per step; the
ratio of 2-process to 1-process samples/s is the speed-up (2.0 at best, when each process has
cores of its own; gloo on CPUs, NCCL on GPUs).

    python benchmarks/data_parallel.py [--out benchmarks/results] [--quick] [--threads 1]
        [--steps 40] [--batch 256] [--accelerator cpu]
"""

from __future__ import annotations

import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, parser, write

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "toy" / "points_flow.yaml"
WINDOW = 5
BACKBONE = "{dim: 256, depth: 4, heads: 4}"  # 3.2 M parameters: the gradient all-reduce is real work


def command(processes: int, root: Path, steps: int, batch: int, accelerator: str,
            backbone: str = BACKBONE) -> list[str]:
    """The ``polyguide fit`` command line of one configuration."""
    return [sys.executable, "-m", "framework.cli", "fit", "--config", str(RECIPE),
            "--trainer.accelerator", accelerator, "--trainer.devices", str(processes),
            "--trainer.strategy", "ddp" if processes > 1 else "auto", "--trainer.max_steps", str(steps),
            "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
            "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.enable_checkpointing", "false",
            "--trainer.callbacks", "[]", "--trainer.default_root_dir", str(root),
            "--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", str(root),
            "--trainer.callbacks+=lightning.pytorch.callbacks.ThroughputMonitor",
            "--trainer.callbacks.batch_size_fn", "framework.training.module.batch_size",
            "--trainer.callbacks.window_size", str(WINDOW),
            "--model.backbone", backbone, "--model.val_guidance", "null", "--model.warmup_steps", "1",
            "--data.init_args.batch_size", str(batch),
            "--data.init_args.n_train", str(batch * processes * (steps + 1)), "--data.init_args.n_val", "64"]


def measure(processes: int, steps: int, batch: int, threads: int, accelerator: str,
            backbone: str = BACKBONE) -> dict:
    """Run one configuration; its median samples/s (all processes together) and wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
        start = time.perf_counter()
        done = subprocess.run(command(processes, root, steps, batch, accelerator, backbone), cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=1800)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{processes} process(es) failed:\n{done.stderr[-3000:]}")
        (metrics,) = root.rglob("metrics.csv")
        with metrics.open() as f:
            rates = [float(r["train/device/samples_per_sec"]) * processes for r in csv.DictReader(f)
                     if r.get("train/device/samples_per_sec")]
    if not rates:
        raise RuntimeError(f"no throughput was logged in {steps} steps (window {WINDOW})")
    return {"processes": processes, "strategy": "ddp" if processes > 1 else "single",
            "batch_per_process": batch, "global_batch": batch * processes, "steps": steps,
            "samples_per_s": statistics.median(rates), "rates_logged": len(rates), "wall_s": wall}


def run(out: Path, quick: bool = False, threads: int = 1, steps: int = 40, batch: int = 256,
        accelerator: str = "cpu", processes: tuple[int, ...] = (1, 2), backbone: str = BACKBONE) -> dict:
    """Measure each process count, write ``data_parallel.json`` and ``.md`` to ``out``."""
    steps = min(steps, 12) if quick else steps
    load_before = os.getloadavg()
    results = [measure(p, steps, batch, threads, accelerator, backbone) for p in processes]
    base = results[0]["samples_per_s"]
    for r in results:
        r["ratio_vs_1"] = r["samples_per_s"] / base
    payload = {"benchmark": "data_parallel", "recipe": str(RECIPE.relative_to(ROOT)), "backbone": backbone,
               "accelerator": accelerator, "threads_per_process": threads, "window": WINDOW,
               "load_average_before": load_before, "load_average_after": os.getloadavg(),
               "environment": environment(), "results": results}
    write(out, "data_parallel", payload, table(payload))
    return payload


def table(payload: dict) -> str:
    lines = ["| processes | strategy | batch / process | global batch | samples/s | per process | "
             "vs 1 process |", "|---|---|---|---|---|---|---|"]
    for r in payload["results"]:
        per = r["samples_per_s"] / r["processes"]
        lines.append(f"| {r['processes']} | {r['strategy']} | {r['batch_per_process']} | "
                     f"{r['global_batch']} | {r['samples_per_s']:.0f} | {per:.0f} | {r['ratio_vs_1']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    ap = parser(__doc__, quick="12 steps (smoke run)", threads=1, threads_help="torch threads per process")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=256, help="samples per process and step")
    ap.add_argument("--accelerator", default="cpu")
    a = ap.parse_args()
    print(table(run(a.out, a.quick, a.threads, a.steps, a.batch, a.accelerator)))
