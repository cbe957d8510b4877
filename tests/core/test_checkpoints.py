"""One checkpoint loader: each bad file gets one line naming it and the fault; nothing in a file runs.

Every bad input is its own case, tried through ``framework.training.module.load`` (what ``polyguide sample
--checkpoint/--weak`` and ``eval`` use) and through ``export``; malicious files are also tried as
``--weak`` through the CLI.
"""

import os
import pickle
import re
import sys
from pathlib import Path

import pytest
import torch

from framework.cli.main import main
from framework.model.checkpoints import CheckpointError, check_compatible, load_checkpoint
from framework.training.module import GenerativeModule, export, load

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(ROOT.glob("recipes/*/checkpoints/*.ckpt"))
assert len(SHIPPED) >= 7, SHIPPED  # never let an empty glob pass

TINY = {"dim": 8, "depth": 1, "heads": 2}
CONDS = [{"name": "shape", "labels": ["circle", "square"]}, {"name": "color", "labels": ["red", "blue"]}]


def _model(**kw) -> GenerativeModule:
    args = {"family": "flow", "shape": [1, 2], "conditions": CONDS, "backbone": TINY}
    return GenerativeModule(**{**args, **kw})


def _save(model: GenerativeModule, path: Path, **extra) -> Path:
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": "2.6.6", **extra}, path)
    return path


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return _save(_model(), tmp_path_factory.mktemp("good") / "good.ckpt")


# --------------------------------------------------------------------------- bad files
def _truncated(p: Path, good: Path) -> None:
    data = good.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _damaged(p: Path, good: Path) -> None:
    data = bytearray(good.read_bytes())
    start = data.index(b"data/0") + 64  # inside the first tensor's record, keeping the zip directory
    data[start:start + 256] = os.urandom(256)
    p.write_bytes(bytes(data))


BAD = {
    "missing": (lambda p, g: None, "no such file"),
    "directory": (lambda p, g: p.mkdir(), "is a directory"),
    "empty": (lambda p, g: p.write_bytes(b""), "is empty (0 bytes"),
    "truncated": (_truncated, "is truncated"),
    "damaged inside": (_damaged, "is damaged or not a torch checkpoint"),
    "random bytes": (lambda p, g: p.write_bytes(bytes(range(7, 256)) * 8), "is not a torch checkpoint"),
    "text file": (lambda p, g: p.write_text("model:\n  family: flow\n"), "is a text file"),
    "bare pickle of data": (lambda p, g: p.write_bytes(pickle.dumps({"state_dict": {}})),
                            "is a plain pickle, not a torch checkpoint: refused"),
    "legacy torch format": (lambda p, g: torch.save({"epoch": 1}, p, _use_new_zipfile_serialization=False),
                            "no state_dict"),
    "plain state_dict": (lambda p, g: torch.save(_model().state_dict(), p), "is a bare state_dict"),
    "tensor, not a dict": (lambda p, g: torch.save(torch.zeros(3), p), "holds a Tensor"),
    "no state_dict": (lambda p, g: torch.save({"epoch": 3, "global_step": 10}, p), "no state_dict"),
    "no hyper-parameters": (lambda p, g: torch.save({"state_dict": _model().state_dict(), "epoch": 0}, p),
                            "has no hyper-parameters"),
    "another module's checkpoint": (
        lambda p, g: torch.save({"state_dict": {"layer.weight": torch.zeros(2, 32)}, "epoch": 0,
                                 "hyper_parameters": {"hidden_dim": 32, "learning_rate": 0.1},
                                 "hparams_name": "kwargs", "pytorch-lightning_version": "2.6.6"}, p),
        "is a checkpoint of another module (hyper-parameters hidden_dim, learning_rate"),
    "hyper-parameters that build nothing": (
        lambda p, g: torch.save({"state_dict": {}, "hyper_parameters": {"family": "gan"}}, p),
        "its hyper-parameters do not build a model: unknown family 'gan'"),
    "weights of another size": (
        lambda p, g: torch.save({"state_dict": _model(backbone={**TINY, "dim": 16}).state_dict(),
                                 "hyper_parameters": dict(_model().hparams)}, p),
        "its weights do not fit the model its hyper-parameters describe"),
}


def _one_line(e: BaseException, path: Path) -> str:
    msg = str(e)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


@pytest.mark.fault("bad checkpoint file")
@pytest.mark.parametrize("consumer", ["load", "export"])
@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_checkpoint_gets_one_line_naming_it(tmp_path, good, case, consumer):
    make, expected = BAD[case]
    path = tmp_path / "model.ckpt"
    make(path, good)
    dest = tmp_path / "exported.ckpt"
    with pytest.raises(CheckpointError) as info:
        load(path) if consumer == "load" else export(path, dest)
    assert expected in _one_line(info.value, path)
    assert not dest.exists() and sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_every_shipped_checkpoint_loads_and_export_round_trips(tmp_path):
    for path in SHIPPED:
        model = load(path)
        assert not model.training
        assert load_checkpoint(path)["hyper_parameters"]["family"] == model.hparams.family
    out = export(SHIPPED[0], tmp_path / "again.ckpt")
    a, b = load(SHIPPED[0]).state_dict(), load(out).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- the weak model
WEAK = {
    "family": ({"family": "diffusion"}, "family diffusion instead of flow"),
    "prediction space": ({"family_args": {"prediction": "eps"}}, "prediction space eps instead of flow_v"),
    "sample shape": ({"shape": [2, 2]}, "sample shape [2, 2] instead of [1, 2]"),
    "condition labels": ({"conditions": [CONDS[0], {"name": "color", "labels": ["red", "green"]}]},
                         "conditions shape[circle|square], color[red|green] instead of "
                         "shape[circle|square], color[red|blue]"),
    "condition names": ({"conditions": CONDS[:1]}, "conditions shape[circle|square] instead of"),
}


@pytest.mark.fault("incompatible weak model")
@pytest.mark.parametrize("case", list(WEAK))
def test_an_incompatible_weak_model_is_refused_before_sampling(tmp_path, good, case):
    changes, expected = WEAK[case]
    weak_path = _save(_model(**changes), tmp_path / "weak.ckpt")
    main_model, weak = load(good), load(weak_path)
    with pytest.raises(CheckpointError) as info:
        check_compatible(main_model, weak, str(good), str(weak_path))
    msg = _one_line(info.value, weak_path)
    assert str(good) in msg and expected in msg
    with pytest.raises(CheckpointError, match=re.escape(expected)):
        main_model.sample({"shape": "circle"}, "cond(shape).on('weak')", n=2, steps=2, weak=weak)


@pytest.mark.fault("incompatible weak model")
def test_an_incompatible_token_vocabulary_is_refused():
    a = _model(family="masked", family_args={"vocab_size": 12}, shape=[8])
    b = _model(family="masked", family_args={"vocab_size": 14}, shape=[8])
    with pytest.raises(CheckpointError, match="vocabulary 14 instead of 12"):
        check_compatible(a, b)


def test_a_weak_model_of_another_size_is_accepted(tmp_path, good):
    weak = load(_save(_model(backbone={"dim": 16, "depth": 2, "heads": 2}), tmp_path / "big.ckpt"))
    check_compatible(load(good), weak)
    out = load(good).sample({"shape": "circle"}, "cond(shape) + 0.5 * (cond(shape) - cond(shape).on('weak'))",
                            n=2, steps=2, weak=weak)
    assert out.samples.shape == (2, 1, 2)
    text = [load(p) for p in SHIPPED if p.name in ("shakespeare_ar.ckpt", "shakespeare_ar_weak.ckpt")]
    check_compatible(*text)  # the shipped amateur fits its expert


# --------------------------------------------------------------------------- malicious files
def _evil_module(tmp_path: Path, marker: Path) -> str:
    """A module that creates ``marker`` when imported, importable from ``tmp_path``."""
    name = f"polyguide_evil_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef run(*a):\n    return a\n")
    sys.path.insert(0, str(tmp_path))
    return name


def _malicious(kind: str, path: Path, marker: Path, tmp_path: Path, evil: type) -> None:
    hp = dict(_model().hparams)
    if kind == "object in a torch file":
        torch.save(evil(marker), path)
    elif kind == "object inside a checkpoint":
        torch.save({"state_dict": _model().state_dict(), "hyper_parameters": hp, "x": evil(marker)}, path)
    elif kind == "bare pickle":
        path.write_bytes(pickle.dumps(evil(marker)))
    elif kind == "instantiator import path":
        hp["_instantiator"] = f"{_evil_module(tmp_path, marker)}.run"
        _save(_model(), path, hyper_parameters=hp)
    elif kind == "encoder import path":
        hp["conditions"] = [*CONDS, {"name": "text", "kind": "vector", "dim": 4,
                                     "encoder": f"{_evil_module(tmp_path, marker)}:run"}]
        torch.save({"state_dict": {}, "hyper_parameters": hp}, path)


MALICIOUS = ["object in a torch file", "object inside a checkpoint", "bare pickle",
             "instantiator import path", "encoder import path"]


@pytest.mark.fault("malicious file")
@pytest.mark.parametrize("entry", ["checkpoint", "--weak", "export"])
@pytest.mark.parametrize("kind", MALICIOUS)
def test_a_malicious_checkpoint_runs_no_code(tmp_path, good, evil, refusal, kind, entry):
    marker, path = tmp_path / "PWNED", tmp_path / "evil.ckpt"
    modules = set(sys.modules)
    _malicious(kind, path, marker, tmp_path, evil)
    out = ["--n", "1", "--steps", "1", "--out", str(tmp_path / "o"), "--no-progress"]
    argv = {"checkpoint": ["sample", "--checkpoint", str(path), *out],
            "--weak": ["sample", "--checkpoint", str(good), "--weak", str(path), *out],
            "export": ["export", str(path), str(tmp_path / "out.ckpt")]}[entry]
    try:
        msg = refusal(lambda: main(argv))
    finally:
        if sys.path and sys.path[0] == str(tmp_path):
            sys.path.pop(0)
    assert str(path) in msg and ("refused" in msg or "registered" in msg), msg
    assert not marker.exists()
    assert not [m for m in set(sys.modules) - modules if m.startswith("polyguide_evil")]
    assert not (tmp_path / "out.ckpt").exists() and not (tmp_path / "o").exists()


@pytest.mark.parametrize("kind", MALICIOUS[:3])
def test_the_malicious_pickles_are_live_for_unsafe_loaders(tmp_path, evil, kind):
    """Control: the same files do run code when unpickled the unsafe way."""
    marker, path = tmp_path / "PWNED", tmp_path / "evil.ckpt"
    _malicious(kind, path, marker, tmp_path, evil)
    if kind == "bare pickle":
        pickle.loads(path.read_bytes())
    else:
        torch.load(path, weights_only=False)
    assert marker.exists()
