"""Sizes a checkpoint declares are checked against the weights it holds before memory is spent.

Each crafted file is a few KB that asks for a network of gigabytes (or a nonsensical one). It is
given to ``polyguide sample`` in a child process whose address space is capped at 3 GiB (so that
a regression cannot take the machine down); the child must answer with one line and exit code 2,
and its peak resident memory (``wait4``'s ``ru_maxrss``) must stay under 1 GiB.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
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


def run_capped(argv: list[str]) -> tuple[int, int, str]:
    """``polyguide argv`` in a child capped at :data:`CAP` bytes: (exit code, peak RSS bytes, stderr)."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen([sys.executable, "-m", "framework.cli", *argv], stdout=subprocess.DEVNULL,
                             stderr=err, preexec_fn=cap, env=env, cwd=ROOT)
        _, status, usage = os.wait4(p.pid, 0)  # this child's own peak, not the test run's
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return p.returncode, usage.ru_maxrss * 1024, err.read().decode()


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


@SIZES
@pytest.mark.parametrize("case", list(CASES))
def test_a_checkpoint_declaring_a_huge_or_broken_network_is_refused_before_allocating(tmp_path, case):
    backbone, message = CASES[case]
    path = crafted(tmp_path, backbone)
    assert path.stat().st_size < 20_000
    code, peak, err = run_capped(["sample", "--checkpoint", str(path), "--out", str(tmp_path / "o")])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], err[-2000:]
    assert lines[0].startswith(f"polyguide sample: error: checkpoint {path}:"), lines[0]
    assert peak < PEAK, f"peak RSS {peak / 2**20:.0f} MiB"


@SIZES
@pytest.mark.parametrize("config", [{"width": 2**20}, {"codebook_size": 2**28}, {"downsample": 2**200},
                                    {"width": -4}])
def test_a_tokenizer_declaring_a_huge_or_broken_network_is_refused_before_allocating(tmp_path, config):
    path = crafted_vq(tmp_path, **config)
    code, peak, err = run_capped(["sample", "--checkpoint", str(path), "--out", str(tmp_path / "o")])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and f"motion tokenizer {tmp_path / 'vq.pt'}" in lines[0], err[-2000:]
    assert peak < PEAK, f"peak RSS {peak / 2**20:.0f} MiB"
