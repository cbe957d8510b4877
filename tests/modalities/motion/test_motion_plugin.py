"""The motion plugin end to end on tiny data: registry, one training step, guided sampling with a
trajectory, GIF + BVH output, and the CLI's clear errors for bad trajectories."""

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from framework.cli.main import main
from framework.core import plugins
from modalities.motion.bvh import read_bvh
from modalities.motion.data import MotionData


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, make_motion_model):
    root = tmp_path_factory.mktemp("motion")
    torch.manual_seed(0)
    model = make_motion_model()
    dm = MotionData(conditions=["trajectory", "action"], n_train=8, n_val=4, batch_size=4,
                    cache_dir=str(root))
    before = [p.detach().clone() for p in model.parameters()]
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(root), limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    ckpt = root / "tiny.ckpt"
    trainer.save_checkpoint(ckpt)
    return model, ckpt, root


def test_registered_with_its_encoder_and_cost():
    motion = plugins.get("motion")
    assert "motion" in plugins.available()
    assert motion.codec("features", frames_per_token=2).shape == (32, 142)
    assert motion.codec("rotations", frames_per_token=4).shape == (16, 440)
    assert set(motion.encoders) == {"trajectory", "joints"} and set(motion.costs) == {"trajectory", "joints"}


def test_sample_and_write(tiny, tmp_path):
    model, _, _ = tiny
    path = torch.stack([torch.zeros(64), torch.linspace(0, 2, 64)], -1)
    raw = {"trajectory": model.specs["trajectory"].encode(str(_npy(tmp_path, path)), 1)[0], "action": "walk"}
    out = model.sample(raw, "cfg((trajectory, action), 2)", n=2, steps=3, seed=0)
    assert out.media.shape == (2, 64, 22, 3) and out.nfe == 6
    again = model.sample(raw, "cfg((trajectory, action), 2)", n=2, steps=3, seed=0)
    assert torch.equal(out.media, again.media)
    files = plugins.get("motion").write(out.media, tmp_path / "out", rows=["a", "b"], title="t",
                                        conditions=model.conditions(raw, 2))
    gif = Image.open(files[0])
    assert files[0].name == "motion.gif" and gif.n_frames == 64
    assert [f.name for f in files[1:]] == ["sample_00.bvh", "sample_01.bvh"]
    assert read_bvh(files[1]).shape == (64, 22, 3)


def test_cli_sample_with_a_trajectory_file(tiny, tmp_path, capsys):
    _, ckpt, _ = tiny
    path = _npy(tmp_path, torch.stack([torch.linspace(0, 1, 64), torch.zeros(64)], -1))
    assert main(["sample", "--checkpoint", str(ckpt), "--cond", f"trajectory={path}", "--cond", "action=run",
                 "--guidance", "cfg((trajectory, action), 2)", "--steps", "2", "--n", "2",
                 "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    assert (tmp_path / "o" / "motion.gif").exists() and (tmp_path / "o" / "sample_01.bvh").exists()
    bad = _npy(tmp_path, torch.zeros(30, 2), "short.npy")
    assert main(["sample", "--checkpoint", str(ckpt), "--cond", f"trajectory={bad}", "--steps", "2",
                 "--n", "1", "--out", str(tmp_path / "p"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "has 30 frames, the model generates 64" in err and "Traceback" not in err
    assert main(["sample", "--checkpoint", str(ckpt), "--cond", "action=moonwalk", "--steps", "2",
                 "--n", "1", "--out", str(tmp_path / "q"), "--no-progress"]) == 2
    assert "unknown value 'moonwalk' for condition 'action'" in capsys.readouterr().err


def test_cli_sample_without_a_trajectory_writes_the_clips(tiny, tmp_path, capsys):
    """The model has a trajectory condition but none is given: nothing to draw (it crashed the GIF)."""
    _, ckpt, _ = tiny
    assert main(["sample", "--checkpoint", str(ckpt), "--cond", "action=run", "--guidance", "cfg(action, 2)",
                 "--steps", "2", "--n", "2", "--seed", "0", "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 0
    assert Image.open(tmp_path / "o" / "motion.gif").n_frames == 64
    assert read_bvh(tmp_path / "o" / "sample_01.bvh").shape == (64, 22, 3)


def _npy(tmp_path, t, name="path.npy"):
    p = tmp_path / name
    np.save(p, t.numpy())
    return p
