"""The audio codec's training module (``recipes/audio/codec.yaml``) on several processes: ``ddp_spawn``
pickles it (EnCodec's weight-norm parametrisations cannot be pickled as they are), and FSDP2 (Lightning's
``ModelParallelStrategy``) needs a ``configure_model`` that shards it, codebooks kept equal on every
process and a whole model gathered for the export."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import torch

from framework.model.checkpoints import read_checkpoint
from modalities.audio.codec_train import CodecModule

ROOT = Path(__file__).resolve().parents[2]
TINY = {"num_filters": 4, "hidden_size": 16, "codebook_dim": 16, "codebook_size": 16,
        "target_bandwidths": [1.6], "upsampling_ratios": [8, 5, 4, 2], "num_lstm_layers": 1}
FSDP2 = json.dumps({"class_path": "lightning.pytorch.strategies.ModelParallelStrategy",
                    "init_args": {"data_parallel_size": 2, "tensor_parallel_size": 1,
                                  "save_distributed_checkpoint": False}})


def test_codec_module_pickles_with_its_weights():
    """What ``ddp_spawn`` does to the module (torch raised "Serialization of parametrized modules is only
    supported through state_dict()")."""
    torch.manual_seed(0)
    module = CodecModule(config=TINY, crop=3200).eval()
    copy = pickle.loads(pickle.dumps(module))
    assert copy.state_dict().keys() == module.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(copy.state_dict().values(), module.state_dict().values(),
                                                  strict=True))
    audio = torch.randn(2, 1, 3200)
    torch.testing.assert_close(copy(audio, quantize=False)[0], module(audio, quantize=False)[0])
    assert not copy.training and not copy.model.training
    copy.model.encoder.layers[0].conv.parametrizations.weight.original0.sum().backward()  # still trainable


def test_codec_trains_and_exports_under_fsdp2(tmp_path):
    """2 processes sharded by FSDP2, past the quantiser's warm-up (k-means codebooks, EMA updates and
    dead-code restarts, all made the same on both processes), exported whole by process 0."""
    export = tmp_path / "codec"
    cmd = [sys.executable, "-m", "framework.cli", "fit", "--config", str(ROOT / "recipes/audio/codec.yaml"),
           "--model.init_args.config", json.dumps(TINY), "--model.init_args.crop", "3200",
           "--model.init_args.vq_warmup", "1", "--model.init_args.reservoir", "32",
           "--model.init_args.export_to", str(export),
           "--data.init_args.n_train", "16", "--data.init_args.n_val", "8",
           "--data.init_args.batch_size", "2",
           "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", FSDP2,
           "--trainer.max_steps", "3", "--trainer.val_check_interval", "3",
           "--trainer.limit_val_batches", "1",
           "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
           "--trainer.enable_model_summary", "false", "--trainer.logger", "false",
           "--trainer.default_root_dir", str(tmp_path)]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    env.pop("PYTEST_XDIST_WORKER", None)
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (last,) = tmp_path.rglob("last.ckpt")
    ckpt = read_checkpoint(last)
    assert ckpt["global_step"] == 3
    state = ckpt["state_dict"]
    assert bool(state["initialised"])  # data_init ran (before sharding, on the same clips everywhere)
    assert float(state["model.quantizer.layers.0.codebook.cluster_size"].sum()) > 0  # the quantiser is on
    from transformers import EncodecModel

    exported = EncodecModel.from_pretrained(str(export)).state_dict()
    assert exported.keys() == {k.removeprefix("model.") for k in state if k.startswith("model.")}
    for name, value in exported.items():  # the whole weights, as the checkpoint has them
        assert torch.equal(value, state[f"model.{name}"]), name
