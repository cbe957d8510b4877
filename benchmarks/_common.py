"""Shared helpers for benchmarks: interleaved timing, environment, JSON + markdown output."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def interleaved(fns: dict[str, Callable[[], object]], reps: int, warmup: int = 3,
                stat: Callable[[list[float]], float] = statistics.median) -> dict[str, float]:
    """Seconds of each function (``stat`` over repetitions: median by default, ``min`` for long runs
    on a noisy machine), alternating the functions every repetition so drift hits all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(reps):
        for name in names if r % 2 == 0 else reversed(names):
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return {k: stat(v) for k, v in times.items()}


def environment() -> dict[str, object]:
    return {"python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}


def write(out: Path, name: str, payload: dict, table: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2))
    (out / f"{name}.md").write_text(table)


def parser(doc: str | None, quick: str = "few repetitions (smoke run)", threads: int = 2,
           threads_help: str | None = None) -> argparse.ArgumentParser:
    """The options every benchmark shares: ``--out``, ``--quick``, ``--threads``."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--quick", action="store_true", help=quick)
    ap.add_argument("--threads", type=int, default=threads, help=threads_help)
    return ap


def device_options(ap: argparse.ArgumentParser, reps: int) -> None:
    """``--device`` and ``--reps`` for the benchmarks timed side by side with a library's own call."""
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps (must be present)")
    ap.add_argument("--reps", type=int, default=None, help=f"interleaved repetitions (default {reps})")


def side_by_side_main(doc: str | None, run: Callable[..., dict], table: Callable[[dict], str], reps: int,
                      **options: tuple[int, str | None]) -> None:
    """The command line of a benchmark timed side by side with a library's own call: ``--out``,
    ``--quick`` (one repetition), ``--threads``, ``--device``, ``--reps`` and integer ``options``
    (name → ``(default, help)``), all passed to ``run`` by name; prints the table."""
    ap = parser(doc, quick="one repetition (smoke run)")
    device_options(ap, reps=reps)
    for name, (default, text) in options.items():
        ap.add_argument(f"--{name}", type=int, default=default, help=text)
    args = vars(ap.parse_args())
    print(table(run(args.pop("out"), **args)))


def main(doc: str | None, run: Callable[..., dict], table: Callable[[dict], str]) -> None:
    """The command line every benchmark shares: ``--out``, ``--quick``, ``--threads``; prints the table."""
    args = parser(doc).parse_args()
    print(table(run(args.out, quick=args.quick, threads=args.threads)))
