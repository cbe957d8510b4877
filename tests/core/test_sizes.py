"""Sizes a checkpoint declares are checked against the weights it holds before memory is spent.

Each crafted file is a few KB that asks for a network of gigabytes (or a nonsensical one). Every
file is given to ``polyguide sample`` in one child process whose address space is capped at 3 GiB (so
that a regression cannot take the machine down); each command must answer with one line and exit
code 2, and the child's peak resident memory during that command (``VmHWM``, reset through
``/proc/self/clear_refs`` before each) must stay under 1 GiB. One child for all cases: an interpreter
start per case cost ~5 s of CPU each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from framework.model.generative import GenerativeModel

ROOT = Path(__file__).resolve().parents[2]
MOTION = ROOT / "recipes/motion/checkpoints/motion_masked.ckpt"
VQ = ROOT / "recipes/motion/checkpoints/motion_vq.pt"
CAP = 3 * 2**30
PEAK = 2**30
TINY = {"dim": 8, "depth": 1, "heads": 2}
CONDS = [{"name": "shape", "labels": ["circle", "square"]}]
SIZES = pytest.mark.fault("hostile size")


CHILD = """
import contextlib, io, json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
from framework.cli.main import main

def peak():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))

results = []
for argv in json.loads(sys.stdin.read()):
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident size: each command's own peak
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
        except BaseException as e:
            code, err = 1, io.StringIO(err.getvalue() + f"{{type(e).__name__}}: {{e}}")
    results.append([code, peak(), err.getvalue()])
print(json.dumps(results))
"""


def run_capped(commands: list[list[str]]) -> list[tuple[int, int, str]]:
    """Each ``polyguide argv`` in one child capped at :data:`CAP` bytes: (exit code, peak RSS bytes during
    that command, stderr) per command."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", CHILD.format(cap=CAP)], input=json.dumps(commands),
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return [tuple(r) for r in json.loads(p.stdout.strip().splitlines()[-1])]


def crafted(tmp_path: Path, backbone: dict) -> Path:
    """A tiny model's weights under hyper-parameters that declare ``backbone``."""
    model = GenerativeModel(family="flow", shape=[1, 2], conditions=CONDS, backbone=TINY)
    hp = {**dict(model.hparams), "backbone": backbone}
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hp}, path)
    return path


def crafted_vq(tmp_path: Path, **config) -> Path:
    """The shipped motion model, naming a tokenizer file whose config declares ``config``."""
    blob = torch.load(VQ, weights_only=True)
    vq = tmp_path / "vq.pt"
    torch.save({**blob, "config": {**blob["config"], **config}}, vq)
    ckpt = torch.load(MOTION, weights_only=True)
    ckpt["hyper_parameters"]["representation"] = {**ckpt["hyper_parameters"]["representation"],
                                                  "checkpoint": str(vq)}
    path = tmp_path / "motion.ckpt"
    torch.save(ckpt, path)
    return path


CASES = {
    "width 8192": ({"dim": 8192, "depth": 2, "heads": 2}, "declares backbone."),
    "width 10^9": ({"dim": 10**9, "depth": 1, "heads": 2}, "its sizes do not build a network"),
    "depth 10^6": ({"dim": 8, "depth": 10**6, "heads": 2}, "declares 1,000,000 layers"),
    "negative width": ({"dim": -8, "depth": 1, "heads": 2}, "dim must be a whole number ≥ 1, got -8"),
    "zero heads": ({"dim": 8, "depth": 1, "heads": 0}, "heads must be a whole number ≥ 1, got 0"),
    "negative depth": ({"dim": 8, "depth": -3, "heads": 2}, "depth must be a whole number ≥ 0, got -3"),
}


CONFIGS = [{"width": 2**20}, {"codebook_size": 2**28}, {"downsample": 2**200}, {"width": -4}]


@pytest.fixture(scope="module")
def answers(tmp_path_factory) -> dict:
    """Case → (exit code, peak RSS bytes, stderr, crafted file), all run in one capped child."""
    files = {}
    for case, (backbone, _) in CASES.items():
        files[case] = crafted(tmp_path_factory.mktemp("ckpt"), backbone)
    for i, config in enumerate(CONFIGS):
        files[f"vq{i}"] = crafted_vq(tmp_path_factory.mktemp("vq"), **config)
    out = tmp_path_factory.mktemp("out")
    commands = [["sample", "--checkpoint", str(f), "--out", str(out / k)] for k, f in files.items()]
    results = run_capped(commands)
    return {k: (*r, files[k]) for k, r in zip(files, results, strict=True)}


@SIZES
@pytest.mark.parametrize("case", list(CASES))
def test_a_checkpoint_declaring_a_huge_or_broken_network_is_refused_before_allocating(answers, case):
    code, peak, err, path = answers[case]
    assert path.stat().st_size < 20_000
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and CASES[case][1] in lines[0], err[-2000:]
    assert lines[0].startswith(f"polyguide sample: error: checkpoint {path}:"), lines[0]
    assert peak < PEAK, f"peak RSS {peak / 2**20:.0f} MiB"


@SIZES
@pytest.mark.parametrize("config", range(len(CONFIGS)), ids=[str(c) for c in CONFIGS])
def test_a_tokenizer_declaring_a_huge_or_broken_network_is_refused_before_allocating(answers, config):
    code, peak, err, path = answers[f"vq{config}"]
    lines = err.strip().splitlines()
    vq = path.parent / "vq.pt"
    assert code == 2 and len(lines) == 1 and f"motion tokenizer {vq}" in lines[0], err[-2000:]
    assert peak < PEAK, f"peak RSS {peak / 2**20:.0f} MiB"
