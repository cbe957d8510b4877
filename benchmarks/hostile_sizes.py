"""Peak memory of ``polyguide`` on hostile sizes: each crafted input runs in its own child process
(address space capped at 3 GiB, so a regression fails instead of swapping) and its peak resident
memory is read from ``wait4``'s ``ru_maxrss``. The baseline is an ordinary small sampling run.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/hostile_sizes.py            # every case
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/hostile_sizes.py --quick    # baseline + one case

Writes ``hostile_sizes.json`` and ``hostile_sizes.md`` to ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CK = ROOT / "recipes"
CAP = 3 * 2**30


def run(argv: list[str]) -> dict:
    """``polyguide argv`` in a capped child: exit code, peak RSS (MiB), seconds, last stderr line."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-m", "framework.cli", *argv], stdout=subprocess.DEVNULL,
                             stderr=err, preexec_fn=cap, env=env, cwd=ROOT)
        _, status, usage = os.wait4(p.pid, 0)
        seconds = time.perf_counter() - start
        err.seek(0)
        lines = err.read().decode(errors="replace").strip().splitlines()
    return {"exit": os.waitstatus_to_exitcode(status), "peak_mib": usage.ru_maxrss / 1024,
            "seconds": seconds, "stderr": lines[-1][:160] if lines else ""}


def crafted_checkpoint(tmp: Path) -> Path:
    from framework.model.generative import GenerativeModel

    model = GenerativeModel(family="flow", shape=[1, 2], conditions=[{"name": "c", "labels": ["a", "b"]}],
                            backbone={"dim": 8, "depth": 1, "heads": 2})
    path = tmp / "width8192.ckpt"
    huge = {"dim": 8192, "depth": 2, "heads": 2}
    hp = {**dict(model.hparams), "backbone": huge}
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hp}, path)
    return path


def crafted_vq(tmp: Path) -> Path:
    blob = torch.load(CK / "motion/checkpoints/motion_vq.pt", weights_only=True)
    torch.save({**blob, "config": {**blob["config"], "width": 2**20}}, tmp / "vq.pt")
    ckpt = torch.load(CK / "motion/checkpoints/motion_masked.ckpt", weights_only=True)
    ckpt["hyper_parameters"]["representation"]["checkpoint"] = str(tmp / "vq.pt")
    torch.save(ckpt, tmp / "vq_width.ckpt")
    return tmp / "vq_width.ckpt"


def huge_npy(tmp: Path) -> Path:
    path = tmp / "path.npy"
    with open(path, "wb") as f:
        header = {"descr": "<f4", "fortran_order": False, "shape": (10**12, 2)}
        np.lib.format.write_array_header_1_0(f, header)
    return path


def wav_2ghz(tmp: Path) -> Path:
    import soundfile as sf

    path = tmp / "tune.wav"
    sf.write(path, np.zeros(16_000, np.float32), 16_000, subtype="PCM_16", format="WAV")
    data = bytearray(path.read_bytes())
    data[24:28] = (2_000_000_000).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


def alias_bomb(tmp: Path) -> Path:
    lines = ["a: &a [" + ", ".join(['"lol"'] * 9) + "]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    path = tmp / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def cases(tmp: Path, quick: bool) -> dict[str, list[str]]:
    image = str(CK / "image/checkpoints/shapes_flow.ckpt")
    conds = ["--cond", "shape=circle", "--cond", "color=red", "--cond", "position=top left"]
    def out(name: str) -> list[str]:
        return ["--out", str(tmp / name), "--no-progress", "--seed", "0"]

    def image_n(n: int) -> list[str]:
        return ["sample", "--checkpoint", image, "--n", str(n), "--steps", "2", *conds, *out(f"n{n}")]

    all_cases = {
        "baseline: image sample, --n 16": image_n(16),
        "checkpoint declaring width 8192 (tiny weights)": [
            "sample", "--checkpoint", str(crafted_checkpoint(tmp)), *out("w")],
    }
    if quick:
        return all_cases
    motion = str(CK / "motion/checkpoints/motion_flow.ckpt")
    music = str(CK / "audio/checkpoints/music_flow.ckpt")
    return {**all_cases,
            "motion tokenizer declaring width 2^20": [
                "sample", "--checkpoint", str(crafted_vq(tmp)), *out("vq")],
            "trajectory .npy declaring shape (10^12, 2)": [
                "sample", "--checkpoint", motion, "--cond", f"trajectory={huge_npy(tmp)}",
                "--cond", "action=walk", "--n", "1", "--steps", "2", *out("traj")],
            "melody WAV declaring 2 GHz": [
                "sample", "--checkpoint", music, "--cond", f"melody={wav_2ghz(tmp)}", "--n", "1",
                "--steps", "2", *out("wav")],
            "fit recipe: alias bomb (387 M values)": ["fit", "--config", str(alias_bomb(tmp))],
            "image sample, --n 256 (one batch)": image_n(256),
            "image sample, --n 4096 (16 batches of 256)": image_n(4096)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="the baseline and one crafted checkpoint only")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name, argv in cases(Path(d), args.quick).items():
            rows.append({"case": name, **run(argv)})
            print(f"{name}: exit {rows[-1]['exit']}, peak {rows[-1]['peak_mib']:.0f} MiB", file=sys.stderr)
    lines = ["| input | exit code | peak memory (MiB) | seconds | answer |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['exit']} | {r['peak_mib']:.0f} | {r['seconds']:.1f} | "
                     f"{r['stderr'].replace('|', '/') if r['exit'] else 'samples written'} |")
    table = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hostile_sizes.json").write_text(json.dumps(rows, indent=2))
    (args.out / "hostile_sizes.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
