"""The motion data module: batch layout, conditions that mean what the clip does, atomic cache."""

import torch

from modalities.motion.actions import ACTIONS
from modalities.motion.data import MotionData
from modalities.motion.trajectory import DIM, decode_trajectory


def test_batches_and_cache(tmp_path):
    dm = MotionData(conditions=["action", "speed", "trajectory"], n_train=12, n_val=4, batch_size=4,
                    sparse=0.5, cache_dir=str(tmp_path))
    batch = next(iter(dm.train_dataloader()))
    assert batch["media"].shape == (4, 64, 22, 3)
    c = batch["conditions"]
    assert c["action"].shape == (4,) and int(c["action"].max()) < len(ACTIONS)
    assert c["trajectory"].shape == (4, 64, DIM)
    # the trajectory condition is the clip's own root path where given
    want = decode_trajectory(c["trajectory"])
    given = ~torch.isnan(want[..., 0])
    assert torch.allclose(want[given], batch["media"][:, :, 0, [0, 2]][given], atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clips-v2-64-12-0.npz", "clips-v2-64-4-1.npz"]
    again = MotionData(conditions=["action"], n_train=12, n_val=4, cache_dir=str(tmp_path))
    media, conds = again.split("train")
    assert torch.equal(media, dm.split("train")[0])  # read back from the cache
    assert torch.equal(conds["action"], dm.split("train")[1]["action"])
