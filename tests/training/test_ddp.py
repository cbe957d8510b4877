"""Lightning's own DDP strategy trains the module with 2 CPU processes."""

import pickle

import lightning as L
import torch

from framework.toy.data import MixtureData
from framework.training.module import GenerativeModule, load


def test_module_and_data_pickle_for_spawned_processes():
    dm = MixtureData(n_train=64, n_val=64)
    model = GenerativeModule(family="diffusion", shape=[1, 2],
                             conditions=[{"name": n, "labels": list(s.labels)} for n, s in dm.specs.items()],
                             backbone={"dim": 16, "depth": 1, "heads": 2})
    pickle.loads(pickle.dumps(model))
    pickle.loads(pickle.dumps(dm))


def test_ddp_with_two_cpu_processes(tmp_path):
    torch.manual_seed(0)
    dm = MixtureData(n_train=512, n_val=64, batch_size=64)
    model = GenerativeModule(family="flow", shape=[1, 2],
                             conditions=[{"name": n, "labels": list(s.labels)} for n, s in dm.specs.items()],
                             backbone={"dim": 16, "depth": 1, "heads": 2},
                             guidance=["nested([shape, color], [2, 4])"], warmup_steps=1)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_steps=6, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        limit_val_batches=1, num_sanity_val_steps=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.fit(model, dm)
    # ddp_spawn trains in the child processes and hands the trained weights back to this one
    assert trainer.world_size == 2 and trainer.state.finished
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    path = tmp_path / "ddp.ckpt"
    trainer.save_checkpoint(path)
    restored = load(str(path))
    out = restored.sample({"shape": "star", "color": "blue"}, n=4, steps=3, seed=0)
    assert out.samples.shape == (4, 1, 2) and out.nfe == 3 * 3
