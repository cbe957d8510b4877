"""Every shipped recipe under Lightning's ``ddp``, ``ddp_spawn`` and FSDP2 on 2 CPU processes (gloo).

Each cell is the real ``polyguide fit --config recipes/<modality>/<name>.yaml`` command with the
recipe's own model, data and callbacks (EMA, ModelCheckpoint, warm starts, ...), changed only in what a
smoke run needs: ``--trainer.max_steps`` (default 3), one validation at the last step on one batch,
no sanity check, no progress bar, a temporary ``default_root_dir`` and a CSV logger there, and
``export``/``export_to`` set to null where a recipe would overwrite a shipped checkpoint at the end,
``warmup_steps: 1`` where a cosine schedule needs more steps than its warm-up.
FSDP2 is Lightning's ``ModelParallelStrategy`` with ``data_parallel_size: 2, tensor_parallel_size: 1``
(its ``FSDPStrategy`` refuses a CPU accelerator; see docs/training.md).

A cell passes when the command exits 0 and ``last.ckpt`` is at the last step; where the recipe averages
weights (EMA) the checkpoint's per-rank EMA digests must also agree and equal the shipped weights.
Results go to ``--out`` as ``recipe_matrix.json`` and ``recipe_matrix.md`` (a table), written after every
cell, so a run stopped early keeps what it finished.

    python benchmarks/recipe_matrix.py [--out benchmarks/results] [--steps 3] [--timeout 900]
        [--only toy/points_flow shapes] [--strategies ddp ddp_spawn fsdp2] [--by-strategy]
        [--resume [--retry-failed]]

It is slow (minutes per cell on 2 CPU cores): CI runs the toy recipes this way in
tests/training/test_distributed_fit.py, not this script.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment

ROOT = Path(__file__).resolve().parents[1]
FSDP2 = json.dumps({"class_path": "lightning.pytorch.strategies.ModelParallelStrategy",
                    "init_args": {"data_parallel_size": 2, "tensor_parallel_size": 1,
                                  "save_distributed_checkpoint": False}})
STRATEGIES = {"ddp": "ddp", "ddp_spawn": "ddp_spawn", "fsdp2": FSDP2}
#: model arguments that write outside the run's folder when training ends (shipped checkpoints)
EXPORTS = ("export", "export_to")


def recipes(only: list[str] | None = None) -> list[Path]:
    """Every ``recipes/*/*.yaml`` (image, text, motion, audio, toy, then any other; by name within), or
    those whose ``modality/name`` contains one of ``only``."""
    order = ["image", "text", "motion", "audio", "toy"]  # toy last: CI runs those already
    found = sorted(ROOT.glob("recipes/*/*.yaml"),
                   key=lambda p: (order.index(p.parent.name) if p.parent.name in order else len(order),
                                  p.stem))
    if only:
        found = [p for p in found if any(o in f"{p.parent.name}/{p.stem}" for o in only)]
    return found


def command(recipe: Path, strategy: str, root: Path, steps: int) -> list[str]:
    """The ``polyguide fit`` command line of one cell."""
    cmd = [sys.executable, "-m", "framework.cli", "fit", "--config", str(recipe),
           "--trainer.accelerator", "cpu", "--trainer.devices", "2",
           "--trainer.strategy", STRATEGIES[strategy],
           "--trainer.max_steps", str(steps), "--trainer.val_check_interval", str(steps),
           "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
           "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
           "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(root),
           "--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", str(root)]
    model = (yaml.safe_load(recipe.read_text()) or {}).get("model") or {}
    args = model.get("init_args", model) if "class_path" in model else model
    prefix = "--model.init_args." if "class_path" in model else "--model."
    for key in EXPORTS:
        if args.get(key):
            cmd += [f"{prefix}{key}", "null"]
    if args.get("cosine"):  # a cosine schedule refuses max_steps below its warm-up
        cmd += [f"{prefix}warmup_steps", "1"]
    return cmd


def check(root: Path, steps: int) -> tuple[str, str]:
    """``(status, detail)`` of a finished run's checkpoint: ``ok`` or ``FAIL`` and why."""
    from framework.model.checkpoints import read_checkpoint
    from framework.training.ema import state_digest

    lasts = list(root.rglob("last.ckpt"))
    if len(lasts) != 1:
        return "FAIL", f"{len(lasts)} last.ckpt files"
    ckpt = read_checkpoint(lasts[0])
    if ckpt.get("global_step") != steps:
        return "FAIL", f"last.ckpt at step {ckpt.get('global_step')}, not {steps}"
    digests = ckpt.get("ema_digests")
    if digests is None:
        return "ok", "no EMA"
    if len(digests) != 2 or len(set(digests)) != 1:
        return "FAIL", f"EMA differs across ranks: {digests}"
    if digests[0] != state_digest(ckpt["state_dict"]):
        return "FAIL", "the checkpoint's weights are not the EMA"
    return "ok", "EMA equal on both ranks"


def git_commit() -> str:
    """The checked-out commit (``+dirty`` with uncommitted changes), or ``unknown`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def last_error(stderr: str) -> str:
    """The last line of a failed run's standard error that says something (shortened)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith(" ")]
    return (lines[-1] if lines else "(no output)")[:200]


def run_cell(recipe: Path, strategy: str, steps: int, timeout: int) -> dict:
    """Run one recipe under one strategy; its result row."""
    name = f"{recipe.parent.name}/{recipe.stem}"
    commit = git_commit()
    with tempfile.TemporaryDirectory(prefix="matrix-") as tmp:
        root = Path(tmp)
        env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
        start = time.perf_counter()
        try:
            done = subprocess.run(command(recipe, strategy, root, steps), cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:  # what it printed so far tells a hang from slowness
            stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
            return {"recipe": name, "strategy": strategy, "status": "TIMEOUT", "wall_s": timeout,
                    "detail": f"no exit within {timeout} s", "stderr_tail": stderr[-4000:],
                    "commit": commit}
        wall = time.perf_counter() - start
        if done.returncode != 0:
            return {"recipe": name, "strategy": strategy, "status": "FAIL", "wall_s": wall,
                    "detail": f"exit {done.returncode}: {last_error(done.stderr)}",
                    "stderr_tail": done.stderr[-4000:], "commit": commit}
        status, detail = check(root, steps)
        return {"recipe": name, "strategy": strategy, "status": status, "wall_s": wall, "detail": detail,
                "commit": commit, "load_average": os.getloadavg()[0]}


def table(results: list[dict], strategies: list[str], names: list[str] | None = None) -> str:
    """A markdown table: one row per recipe (those of ``names`` first, in order, then any other with
    a result), one column per strategy (status and seconds, or ``not run``)."""
    rows: dict[str, dict[str, dict]] = {name: {} for name in names or []}
    for r in results:
        rows.setdefault(r["recipe"], {})[r["strategy"]] = r
    lines = ["| recipe | " + " | ".join(strategies) + " |", "|---|" + "---|" * len(strategies)]
    for recipe, cells in rows.items():
        shown = []
        for s in strategies:
            c = cells.get(s)
            shown.append("not run" if c is None else f"{c['status']} ({c['wall_s']:.0f} s)")
        lines.append(f"| {recipe} | " + " | ".join(shown) + " |")
    failures = [r for r in results if r["status"] != "ok"]
    if failures:
        lines += ["", "Failures:", ""]
        lines += [f"- {r['recipe']} / {r['strategy']}: {r['status']}: {r['detail']}" for r in failures]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    ap.add_argument("--only", nargs="*", default=None,
                    help="recipes whose modality/name contains one of these")
    ap.add_argument("--strategies", nargs="*", default=list(STRATEGIES), choices=list(STRATEGIES))
    ap.add_argument("--by-strategy", action="store_true",
                    help="every recipe under the first strategy, then under the next (default: each recipe "
                         "under every strategy, then the next recipe)")
    ap.add_argument("--resume", action="store_true",
                    help="keep the cells already in --out's recipe_matrix.json and run only the others")
    ap.add_argument("--retry-failed", action="store_true",
                    help="with --resume, run again the cells that did not pass (after a fix)")
    ap.add_argument("--report", action="store_true",
                    help="run nothing: print the table of --out's recipe_matrix.json, every selected "
                         "recipe and strategy (cells without a result say 'not run')")
    args = ap.parse_args()
    if args.report:
        saved = json.loads((args.out / "recipe_matrix.json").read_text())["results"]
        print(table(saved, args.strategies, [f"{r.parent.name}/{r.stem}" for r in recipes(args.only)]))
        return
    results: list[dict] = []
    saved = args.out / "recipe_matrix.json"
    cells = [(r, s) for r in recipes(args.only) for s in args.strategies]
    if args.resume and saved.exists():
        results = json.loads(saved.read_text())["results"]
        if args.retry_failed:  # the selected cells that did not pass; every other row stays
            selected = {(f"{r.parent.name}/{r.stem}", s) for r, s in cells}
            results = [r for r in results
                       if r["status"] == "ok" or (r["recipe"], r["strategy"]) not in selected]
    done = {(r["recipe"], r["strategy"]) for r in results}
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    if args.by_strategy:
        cells.sort(key=lambda cell: args.strategies.index(cell[1]))  # stable: recipes keep their order
    for recipe, strategy in cells:
        if (f"{recipe.parent.name}/{recipe.stem}", strategy) in done:
            continue
        row = run_cell(recipe, strategy, args.steps, args.timeout)
        results.append(row)
        print(f"{row['recipe']:40s} {strategy:10s} {row['status']:8s} {row['wall_s']:6.0f} s  "
              f"{row['detail']}", flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        payload = {"started": started, "steps": args.steps, "environment": environment(),
                   "load_average": os.getloadavg(), "results": results}
        (args.out / "recipe_matrix.json").write_text(json.dumps(payload, indent=2))
        (args.out / "recipe_matrix.md").write_text(table(results, args.strategies))
    print(table(results, args.strategies))


if __name__ == "__main__":
    main()
