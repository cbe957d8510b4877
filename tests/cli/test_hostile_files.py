"""Crafted checkpoints whose hyper-parameters point at other files (tokenizers, codecs, caches):
one line and exit code 2, no file written outside ``--out``, nothing in those files runs."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from framework.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
TEXT = ROOT / "recipes/text/checkpoints/shakespeare_masked.ckpt"
MOTION = ROOT / "recipes/motion/checkpoints/motion_masked.ckpt"
BAD = pytest.mark.fault("bad checkpoint file")


def with_representation(tmp_path: Path, source: Path, **changes) -> Path:
    ckpt = torch.load(source, weights_only=True)
    rep = ckpt["hyper_parameters"]["representation"]
    ckpt["hyper_parameters"]["representation"] = {**rep, **changes}
    path = tmp_path / "crafted.ckpt"
    torch.save(ckpt, path)
    return path


def sample_line(path: Path, tmp_path: Path, capsys) -> str:
    code = main(["sample", "--checkpoint", str(path), "--out", str(tmp_path / "out"), "--n", "1",
                 "--steps", "1"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.fault("silently wrong")
def test_a_checkpoint_cannot_choose_where_sampling_writes(tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    path = with_representation(tmp_path, TEXT, cache_dir=str(elsewhere))
    code = main(["sample", "--checkpoint", str(path), "--out", str(tmp_path / "out"), "--n", "1",
                 "--steps", "2", "--seed", "0", "--cond", "genre=comedy"])
    assert code == 0, capsys.readouterr().err
    assert not elsewhere.exists()


@BAD
@pytest.mark.parametrize("case", ["missing", "not json", "json of something else"])
def test_a_bad_tokenizer_file_is_one_line(tmp_path, capsys, case):
    tok = tmp_path / "tok.json"
    if case == "not json":
        tok.write_bytes(b"\x00\x01 not a tokenizer {{{")
    elif case == "json of something else":
        tok.write_text('{"model": {"type": "Evil", "class_path": "os.system"}}')
    line = sample_line(with_representation(tmp_path, TEXT, tokenizer=str(tok)), tmp_path, capsys)
    assert line.startswith("polyguide sample: error: ") and "tok.json" in line, line


@BAD
@pytest.mark.parametrize("case", ["missing", "malicious pickle", "text"])
def test_a_bad_motion_tokenizer_file_is_one_line_and_runs_nothing(tmp_path, capsys, case):
    vq = tmp_path / "vq.pt"
    if case == "malicious pickle":
        torch.save({"config": {}, "state_dict": {}, "x": Evil(tmp_path / "PWNED")}, vq)
    elif case == "text":
        vq.write_text("width: 1048576\n")
    line = sample_line(with_representation(tmp_path, MOTION, checkpoint=str(vq)), tmp_path, capsys)
    assert line.startswith("polyguide sample: error: ") and "vq.pt" in line, line
    assert not (tmp_path / "PWNED").exists()


@BAD
def test_a_plain_pickle_motion_tokenizer_is_refused(tmp_path, capsys):
    vq = tmp_path / "vq.pt"
    vq.write_bytes(pickle.dumps(Evil(tmp_path / "PWNED")))
    line = sample_line(with_representation(tmp_path, MOTION, checkpoint=str(vq)), tmp_path, capsys)
    assert "vq.pt" in line and not (tmp_path / "PWNED").exists(), line


@BAD
@pytest.mark.parametrize(("case", "message"), [
    ("hidden_size 8192", "declares encoder.layers"),
    ("codebook_size 2**20", "declares quantizer"),
    ("pickled weights only", "expected its weights in model.safetensors"),
    ("config of something else", "unreadable config.json"),
])
def test_a_codec_folder_declaring_other_sizes_is_one_line_before_allocating(tmp_path, capsys, case, message):
    import json
    import shutil

    folder = tmp_path / "codec"
    shutil.copytree(ROOT / "recipes/audio/checkpoints/codec", folder)
    config = json.loads((folder / "config.json").read_text())
    if case == "hidden_size 8192":
        config["hidden_size"] = 8192
    elif case == "codebook_size 2**20":
        config["codebook_size"] = 2**20
    elif case == "pickled weights only":
        (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    else:
        config = {"model_type": "bert", "hidden_size": "wide"}
    (folder / "config.json").write_text(json.dumps(config))
    line = sample_line(with_representation(tmp_path, ROOT / "recipes/audio/checkpoints/words_ar.ckpt",
                                           path=str(folder)), tmp_path, capsys)
    assert str(folder) in line and message in line, line
