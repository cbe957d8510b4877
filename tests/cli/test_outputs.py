"""``polyguide sample`` (and ``eval``) outputs: a run owns its folder, a manifest marks a complete
run, files are never torn (written atomically), large ``--n`` is sampled in bounded batches, any
``--n`` grids."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import framework.cli.commands as commands
from framework.cli.main import main
from framework.generators.base import Family

ROOT = Path(__file__).resolve().parents[2]
IMAGE = str(ROOT / "recipes/image/checkpoints/shapes_flow.ckpt")
COND = ["--cond", "shape=circle", "--cond", "color=red", "--cond", "position=top left"]
OUT = pytest.mark.fault("torn or mixed output")


def sample(out: Path, n: int, seed: int = 0, *extra: str) -> int:
    return main(["sample", "--checkpoint", IMAGE, "--out", str(out), "--n", str(n), "--steps", "2",
                 "--seed", str(seed), "--no-progress", *COND, *extra])


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


@OUT
def test_a_second_run_never_mixes_with_the_first(tmp_path, capsys):
    out = tmp_path / "out"
    assert sample(out, 4) == 0
    first = sorted(p.name for p in out.iterdir())
    assert sample(out, 2, 1) == 0
    said = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == first  # the first run is untouched
    (sub,) = [p for p in out.iterdir() if p.is_dir()]
    assert f"writes to its own folder {sub}" in said
    assert sorted(p.name for p in sub.iterdir()) == ["grid.png", "manifest.json", "sample_000.png",
                                                     "sample_001.png", "samples.pt"]
    for folder, n in ((out, 4), (sub, 2)):
        m = manifest(folder)
        assert m["complete"] and m["n"] == n
        assert sorted(f["file"] for f in m["files"]) == sorted(p.name for p in folder.iterdir()
                                                               if p.is_file() and p.name != "manifest.json")


@OUT
def test_eval_owns_its_folder_too(tmp_path, capsys):
    out = tmp_path / "out"
    run = ["eval", "--checkpoint", IMAGE, "--n", "4", "--steps", "2", "--conditions", "shape",
           "--out", str(out), "--no-progress"]
    assert main([*run, "--seed", "0"]) == 0
    first = (out / "eval.json").read_bytes()
    assert main([*run, "--seed", "1"]) == 0
    assert (out / "eval.json").read_bytes() == first  # the first run's table is untouched
    (sub,) = [p for p in out.iterdir() if p.is_dir()]
    assert f"writes to its own folder {sub}" in capsys.readouterr().out
    for folder, seed in ((out, 0), (sub, 1)):
        m = manifest(folder)
        assert m["complete"] and m["command"] == "eval" and m["seed"] == seed
        assert sorted(f["file"] for f in m["files"]) == ["eval.json", "eval.md"]


@OUT
def test_a_folder_with_the_users_own_files_is_left_alone(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sample_000.png").write_bytes(b"my own picture")
    assert sample(out, 1) == 0
    assert (out / "sample_000.png").read_bytes() == b"my own picture"
    assert "writes to its own folder" in capsys.readouterr().out


@OUT
def test_concurrent_runs_into_one_folder_never_mix(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "framework.cli", "sample", "--checkpoint", IMAGE, "--out", str(out),
           "--n", "6", "--steps", "2", "--no-progress", *COND]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([*cmd, "--seed", str(s)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for s in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    folders = [out, *[p for p in out.iterdir() if p.is_dir()]]
    assert len(folders) == 3
    seeds = set()
    for folder in folders:
        m = manifest(folder)
        assert m["complete"] and len(m["files"]) == 8  # grid, 6 samples, samples.pt
        assert sorted(f["file"] for f in m["files"]) == sorted(
            p.name for p in folder.iterdir() if p.is_file() and p.name != "manifest.json")
        record = torch.load(folder / "samples.pt", weights_only=True)
        seeds.add(record["seed"])
    assert seeds == {0, 1, 2}


@OUT
def test_an_interrupted_run_leaves_no_torn_file_and_no_complete_manifest(tmp_path):
    """SIGKILL while the PNGs are being written: every file under its final name is whole, and the
    manifest says the run is not complete."""
    out = tmp_path / "out"
    argv = ["sample", "--checkpoint", IMAGE, "--out", str(out), "--n", "40", "--steps", "1", "--seed", "0",
            "--no-progress", *COND]
    script = ("import io, sys, time\n"
              "from PIL import Image\n"
              "real = Image.Image.save\n"
              "def slow(self, fp, *a, **k):  # each PNG written in two halves, 0.3 s apart\n"
              "    buf = io.BytesIO(); real(self, buf, format='PNG'); data = buf.getvalue()\n"
              "    with open(fp, 'wb') as f:\n"
              "        half = len(data) // 2\n"
              "        f.write(data[:half]); f.flush(); time.sleep(0.3); f.write(data[half:])\n"
              "Image.Image.save = slow\n"
              "from framework.cli.main import main\n"
              f"sys.exit(main({argv!r}))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("sample_*.png"))) < 3:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    from PIL import Image

    pngs = sorted(out.glob("sample_*.png"))
    assert pngs, "the run was killed before writing anything"
    for f in [*pngs, out / "grid.png"]:
        with Image.open(f) as im:
            im.load()  # a truncated PNG raises here
    assert manifest(out)["complete"] is False


@OUT
def test_samples_pt_is_written_atomically(tmp_path, monkeypatch, capsys):
    """A failure while saving samples.pt (e.g. the disk is full) leaves no samples.pt at all, and is
    one line."""
    out = tmp_path / "out"

    def full_disk(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(commands.torch, "save", full_disk)
    assert sample(out, 1) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "No space left on device" in err[0] and "incomplete" in err[0], err
    assert not (out / "samples.pt").exists()
    assert not any(p.name.startswith(".samples.pt") for p in out.iterdir())
    assert manifest(out)["complete"] is False


@OUT
def test_a_file_size_limit_leaves_no_torn_file(tmp_path):
    """Under ``ulimit -f`` (RLIMIT_FSIZE) the write fails part-way: one line, exit 2, and no file
    under its final name is torn."""
    import resource

    out = tmp_path / "out"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # bytes: less than samples.pt of 64

    argv = ["sample", "--checkpoint", IMAGE, "--out", str(out), "--n", "64", "--steps", "1", "--seed", "0",
            "--no-progress", *COND]
    p = subprocess.run([sys.executable, "-m", "framework.cli", *argv], capture_output=True, text=True,
                       timeout=300, preexec_fn=limit, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    err = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(err) == 1 and "File too large" in err[0], p.stderr[-2000:]
    from PIL import Image

    for f in out.glob("*.png"):
        with Image.open(f) as im:
            im.load()
    if (out / "samples.pt").exists():
        torch.load(out / "samples.pt", weights_only=True)
    assert manifest(out)["complete"] is False


@pytest.mark.fault("CLI arguments")
@pytest.mark.parametrize("n", [5, 7, 10, 11, 13])
def test_the_image_grid_takes_any_n(tmp_path, n):
    out = tmp_path / "out"
    assert sample(out, n) == 0
    assert len(list(out.glob("sample_*.png"))) == n and (out / "grid.png").stat().st_size > 0


@pytest.mark.fault("hostile size")
def test_a_large_n_is_sampled_in_bounded_batches(tmp_path, monkeypatch):
    sizes = []
    real = Family.sample

    def spy(self, *a, **k):
        out = real(self, *a, **k)
        sizes.append(out.samples.shape[0])
        return out

    monkeypatch.setattr(Family, "sample", spy)
    monkeypatch.setattr(commands, "MAX_BATCH", 4)
    out = tmp_path / "out"
    assert sample(out, 10) == 0
    assert sizes == [4, 4, 2]
    record = torch.load(out / "samples.pt", weights_only=True)
    assert record["samples"].shape[0] == 10 and len(list(out.glob("sample_*.png"))) == 10
    assert not torch.equal(record["samples"][:4], record["samples"][4:8])  # each batch its own noise


@pytest.mark.fault("bad condition")
@pytest.mark.parametrize("value", ["a red\ncircle", "a red\rcircle", "tab\there"])
def test_a_line_break_in_a_cond_value_is_one_line_before_sampling(tmp_path, capsys, value, monkeypatch):
    monkeypatch.setattr(Family, "sample", lambda *a, **k: pytest.fail("sampled"))
    ckpt = str(ROOT / "recipes/image/checkpoints/shapes_text_flow.ckpt")
    code = main(["sample", "--checkpoint", ckpt, "--out", str(tmp_path / "o"), "--cond", f"text={value}"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and "line break" in err[0], err
