"""Input files (a trajectory .npy, a melody WAV, a checkpoint) are checked before they are read:
one line naming the file, sizes bounded from the header, a FIFO never blocks."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from framework.cli.main import main
from framework.core.conditions import ConditionError
from modalities.audio.features import AudioFileError, read_wav
from modalities.motion.actions import FRAMES
from modalities.motion.trajectory import load_trajectory

ROOT = Path(__file__).resolve().parents[2]
IMAGE = str(ROOT / "recipes/image/checkpoints/shapes_flow.ckpt")
NPY = pytest.mark.fault("bad input file")


pytestmark = pytest.mark.usefixtures("never_block")


def _npy_header(path: Path, shape, descr="<f4") -> None:
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": shape})


def _trajectory(tmp_path: Path, case: str) -> Path:
    p = tmp_path / "path.npy"
    good = np.zeros((FRAMES, 2), np.float32)
    if case == "empty file":
        p.write_bytes(b"")
    elif case == "folder":
        p.mkdir()
    elif case == "renamed npz":
        with open(p, "wb") as f:
            np.savez(f, a=good)
    elif case == "structured dtype":
        np.save(p, np.zeros(FRAMES, dtype=[("x", "f4"), ("z", "f4")]))
    elif case == "complex":
        np.save(p, good.astype(np.complex64))
    elif case == "datetime":
        np.save(p, np.zeros((FRAMES, 2), dtype="datetime64[s]"))
    elif case == "text":
        np.save(p, np.full((FRAMES, 2), "1.0"))
    elif case == "object (pickle)":
        np.save(p, np.array([[object(), 1]] * FRAMES, dtype=object), allow_pickle=True)
    elif case == "header (10^12, 2)":
        _npy_header(p, (10**12, 2))
    elif case == "truncated":
        np.save(p, good)
        p.write_bytes(p.read_bytes()[:-16])
    elif case == "not npy":
        p.write_text("0.1, 0.2\n" * FRAMES)
    elif case == "FIFO":
        os.mkfifo(p)
    elif case == "dangling link":
        p.symlink_to(tmp_path / "gone.npy")
    elif case == "long name":
        p = tmp_path / ("a" * 300 + ".npy")
    elif case == "overflows float32":
        np.save(p, np.full((FRAMES, 2), 1e300))
    elif case == "zero-size array":
        np.save(p, np.zeros((0, 2), np.float32))
    return p


TRAJECTORY_CASES = {
    "empty file": "is empty (0 bytes)", "folder": "is a folder, not a file",
    "renamed npz": "is a .npz archive", "structured dtype": "holds records (a structured dtype)",
    "complex": "holds complex numbers", "datetime": "holds dates/times", "text": "holds text",
    "object (pickle)": "holds Python objects", "header (10^12, 2)": "declares shape [1000000000000, 2]",
    "truncated": "is truncated", "not npy": "is not a .npy array", "FIFO": "is a FIFO (named pipe)",
    "dangling link": "which does not exist", "long name": "the name is longer than this system allows",
    "overflows float32": "NaN or infinite values", "zero-size array": "is an empty array",
}


@NPY
@pytest.mark.parametrize("case", list(TRAJECTORY_CASES))
def test_a_bad_trajectory_file_is_one_clear_error_without_warnings(tmp_path, case):
    path = _trajectory(tmp_path, case)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy warning printed before the error is a fault too
        with pytest.raises(ConditionError) as info:
            load_trajectory(str(path))
    message = str(info.value)
    assert TRAJECTORY_CASES[case] in message and "\n" not in message, message
    assert "trajectory file" in message


@NPY
@pytest.mark.parametrize("value", [np.zeros((FRAMES, 2), np.complex64),
                                   np.zeros((FRAMES, 2), "datetime64[s]")])
def test_a_bad_trajectory_array_is_refused(value):
    import torch

    for v in (value, torch.zeros(FRAMES, 2, dtype=torch.complex64)):
        with pytest.raises(ConditionError, match="not plain numbers"):
            load_trajectory(v)


def _wav(tmp_path: Path, case: str) -> Path:
    p = tmp_path / "tune.wav"
    wave = np.zeros(16_000, np.float32)
    if case in ("NaN", "inf", "3e38"):
        wave[100:200] = {"NaN": np.nan, "inf": np.inf, "3e38": 3e38}[case]
        sf.write(p, wave, 16_000, subtype="FLOAT", format="WAV")
    elif case in ("rate 1 Hz", "rate 2 GHz"):
        sf.write(p, wave, 16_000, subtype="PCM_16", format="WAV")
        data = bytearray(p.read_bytes())
        rate = 1 if case == "rate 1 Hz" else 2_000_000_000
        data[24:28] = rate.to_bytes(4, "little")
        data[28:32] = (rate * 2).to_bytes(4, "little", signed=False) if rate * 2 < 2**32 else b"\xff" * 4
        p.write_bytes(bytes(data))
    elif case == "FIFO":
        os.mkfifo(p)
    elif case == "long name":
        p = tmp_path / ("b" * 300 + ".wav")
    elif case == "folder":
        p.mkdir()
    return p


WAV_CASES = {"NaN": "NaN or infinite samples", "inf": "NaN or infinite samples", "3e38": "which is not audio",
             "rate 1 Hz": "declares a sample rate of 1 Hz",
             "rate 2 GHz": "declares a sample rate of 2,000,000,000 Hz",
             "FIFO": "is a FIFO", "long name": "the name is longer", "folder": "is a folder"}


@pytest.mark.fault("audio input")
@pytest.mark.parametrize("case", list(WAV_CASES))
def test_a_bad_melody_wav_is_one_clear_error(tmp_path, case):
    with pytest.raises(AudioFileError) as info:
        read_wav(_wav(tmp_path, case))
    assert WAV_CASES[case] in str(info.value) and "\n" not in str(info.value), str(info.value)


def _one_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.mark.fault("CLI arguments")
@pytest.mark.parametrize("case", ["FIFO", "long name"])
@pytest.mark.parametrize("option", ["--checkpoint", "--weak"])
def test_a_fifo_or_long_checkpoint_name_is_one_line(tmp_path, capsys, case, option):
    path = tmp_path / "model.ckpt"
    if case == "FIFO":
        os.mkfifo(path)
    else:
        path = tmp_path / ("c" * 300 + ".ckpt")
    main_ckpt = IMAGE if option == "--weak" else str(path)
    argv = ["sample", "--checkpoint", main_ckpt, "--out", str(tmp_path / "o")]
    if option == "--weak":
        argv += ["--weak", str(path)]
    assert main(argv) == 2
    line = _one_line(capsys)
    assert ("is a FIFO" if case == "FIFO" else "the name is longer") in line, line


@pytest.mark.fault("CLI arguments")
@pytest.mark.parametrize("case", ["dangling link", "long name"])
def test_a_dangling_or_long_out_is_one_line(tmp_path, capsys, case):
    out = tmp_path / "out"
    if case == "dangling link":
        out.symlink_to(tmp_path / "gone")
    else:
        out = tmp_path / ("d" * 300)
    assert main(["sample", "--checkpoint", IMAGE, "--out", str(out), "--n", "1", "--steps", "1"]) == 2
    line = _one_line(capsys)
    assert "output folder" in line and ("does not exist" in line or "name too long" in line.lower()), line
