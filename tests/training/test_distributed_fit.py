"""``polyguide fit`` on two CPU processes (gloo) with the shipped toy recipes, their own callbacks
(EMA, ModelCheckpoint) included: Lightning's ``ddp`` (the command relaunches itself) and ``ddp_spawn``
(the trainer and its callbacks are pickled), one recipe per family, a simulated two-node launch, exact
resumption with two processes, and the loss of two processes against one with the same global batch.

Each run is the real command (``python -m framework.cli fit ...`` in a subprocess, as a user runs it,
with a timeout so that a hang fails; the one-process and ``ddp_spawn`` runs call the same command's
``main`` in this process, their training processes being started from it all the same).
A run is the costly part (every process imports torch and Lightning), so each one is checked for as
much as it can show: the ``ddp`` and FSDP2 runs of points_flow are made once per session (shared by
the pytest-xdist workers, see :func:`_shared`) and serve the EMA, resume and loss checks; the
two-node launch trains the masked family; the FSDP2 runs of the other families and the
tensor-parallel error are four commands run one after another by one group of two processes
(:func:`fsdp_families`).
FSDP on CPU is Lightning's ``ModelParallelStrategy`` (torch's FSDP2, ``fully_shard``): its
``FSDPStrategy`` (FSDP1) refuses a CPU accelerator (see docs/training.md).
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from framework.cli.main import main
from framework.model.checkpoints import read_checkpoint
from framework.training.ema import state_digest
from framework.training.module import load

ROOT = Path(__file__).resolve().parents[2]
TOY = ROOT / "recipes" / "toy"
TIMEOUT = 600  # s; on main the `ddp` run hangs forever (its second process exits at once)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    env.pop("PYTEST_XDIST_WORKER", None)
    for key in [k for k in env if k.startswith("PL_")]:  # what an in-process fit's seed_everything set
        env.pop(key)
    env.update(extra)
    return env


def _args(recipe: str, root: Path, *extra: str, batch: int = 16, steps: int = 4, n_train: int = 256
          ) -> list[str]:
    return [sys.executable, "-m", "framework.cli", "fit", "--config", str(TOY / f"{recipe}.yaml"),
            "--trainer.accelerator", "cpu", "--trainer.max_steps", str(steps),
            "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
            "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(root),
            "--trainer.logger", f'{{"class_path": "lightning.pytorch.loggers.CSVLogger", '
                                f'"init_args": {{"save_dir": "{root}"}}}}',
            "--data.init_args.n_train", str(n_train), "--data.init_args.n_val", "64",
            "--data.init_args.batch_size", str(batch), "--model.val_samples", "8", "--model.val_steps", "2",
            *extra]


def _fit(recipe: str, root: Path, *extra: str, devices: int = 2, strategy: str = "ddp", **kw) -> Path:
    """Run the command; returns the run's ``last.ckpt``."""
    cmd = _args(recipe, root, "--trainer.devices", str(devices), "--trainer.strategy", strategy, *extra, **kw)
    done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sync_dist=True" not in done.stderr  # every epoch-level metric is reduced over processes
    return _last(root)


def _fit_here(recipe: str, root: Path, *extra: str, devices: int = 1, strategy: str = "auto", **kw) -> Path:
    """The same command in this process (``polyguide fit``'s ``main``): for one process and for
    ``ddp_spawn``, whose processes are started from the command's own (so it imports torch once less
    than a subprocess); returns the run's ``last.ckpt``."""
    cmd = _args(recipe, root, "--trainer.devices", str(devices), "--trainer.strategy", strategy, *extra, **kw)
    assert main(cmd[3:]) == 0
    return _last(root)


def _last(root: Path) -> Path:
    (last,) = root.rglob("last.ckpt")
    return last


def _losses(root: Path) -> list[float]:
    (metrics,) = root.rglob("metrics.csv")
    with metrics.open() as f:
        return [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]


def _check_ema_agrees(ckpt: dict, processes: int = 2) -> None:
    digests = ckpt["ema_digests"]
    assert len(digests) == processes and len(set(digests)) == 1, digests  # the same average on every rank
    assert digests[0] == state_digest(ckpt["state_dict"])  # ... and it is what the checkpoint ships
    assert state_digest(ckpt["current_model_state"]) != digests[0]  # the raw weights are not the average


#: points_flow with a global batch of 256 (of 2048 samples); a second ModelCheckpoint keeps step 2's
BIG = dict(batch=128, n_train=2048)
EVERY_2 = ["--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
           "--trainer.callbacks.every_n_train_steps", "2", "--trainer.callbacks.save_top_k", "-1"]


def _shared(tmp_path_factory, name: str, make) -> Path:
    """The folder of run ``name``, made by ``make(folder)`` once per test session.

    pytest-xdist gives every worker its own module-scoped fixtures, so a run whose tests land on both
    workers of ``make test`` (``-n 2``) would be made twice; here the first worker to ask makes it
    under a file lock in the session's shared temporary folder and the other waits and reuses it (a
    failed run fails every test that uses it, with the first failure's message)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the folder the workers' own temporary folders share
    root, failed = base / f"shared-{name}", base / f"shared-{name}.failed"
    with FileLock(f"{root}.lock"):
        if failed.exists():
            pytest.fail(f"shared run {name} failed: {failed.read_text()}")
        if not (root / "made").exists():
            root.mkdir(exist_ok=True)
            try:
                make(root)
            except BaseException as e:
                failed.write_text(str(e)[-3000:])
                raise
            (root / "made").touch()
    return root


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    """points_flow, 4 steps on 2 processes (``ddp``) with 128 samples each, checkpoints at step 2."""
    return _shared(tmp_path_factory, "ddp", lambda root: _fit(
        "points_flow", root, *EVERY_2, "--trainer.callbacks.dirpath", str(root / "every"), **BIG))


def test_ddp_reruns_the_real_command_and_ranks_share_the_ema(ddp_run):
    ckpt = read_checkpoint(_last(ddp_run))
    assert ckpt["global_step"] == 4
    _check_ema_agrees(ckpt)
    assert len(ckpt["rng_states_per_rank"]) == 2


@pytest.mark.parametrize(("recipe", "strategy", "family"), [("points_diffusion", "ddp_spawn", "diffusion"),
                                                            ("tokens_ar", "ddp_spawn", "autoregressive")])
def test_every_family_trains_on_two_processes(recipe, strategy, family, tmp_path, capfd):
    """flow is :func:`ddp_run`'s family (``ddp``), masked the two-node launch's (``ddp`` too). The
    command runs in this process; the spawned processes write to its standard error."""
    ckpt = read_checkpoint(_fit_here(recipe, tmp_path, devices=2, strategy=strategy, steps=2))
    assert "sync_dist=True" not in capfd.readouterr().err  # every epoch-level metric is reduced
    assert ckpt["global_step"] == 2 and ckpt["hyper_parameters"]["family"] == family
    _check_ema_agrees(ckpt)


def test_resume_on_two_processes_is_exact(ddp_run, tmp_path):
    _resumes_exactly(ddp_run, tmp_path)


def _resumes_exactly(run: Path, tmp_path: Path, strategy: str = "ddp") -> None:
    step2 = run / "every" / "epoch=0-step=2.ckpt"
    resumed = read_checkpoint(_fit("points_flow", tmp_path, "--ckpt_path", str(step2), strategy=strategy,
                                   **BIG))
    straight = read_checkpoint(_last(run))
    assert resumed["global_step"] == straight["global_step"] == 4
    for key in ("state_dict", "current_model_state"):
        for name, value in straight[key].items():
            assert torch.equal(resumed[key][name], value), (key, name)
    for a, b in zip(straight["optimizer_states"][0]["state"].values(),
                    resumed["optimizer_states"][0]["state"].values(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(tmp_path) == _losses(run)[2:]  # steps 3 and 4, as the uninterrupted run logged them


@pytest.fixture(scope="module")
def single_run(tmp_path_factory) -> Path:
    """points_flow, 4 steps on one process with the global batch of :data:`BIG` (256)."""
    return _shared(tmp_path_factory, "single", lambda root: _fit_here(
        "points_flow", root, batch=256, n_train=2048))


def _follows(many: Path, one: Path) -> None:
    two, single = _losses(many), _losses(one)
    assert len(two) == len(single) == 4
    # the same batches from the same initial weights; the noise, time and dropout draws differ (each
    # process draws its own), so each step's loss of 256 samples agrees within their sampling noise
    # (a few per cent): the tolerance is 10 % per step
    for a, b in zip(two, single, strict=True):
        assert a == pytest.approx(b, rel=0.10), (two, single)


def test_two_processes_follow_one_with_the_same_global_batch(ddp_run, single_run):
    _follows(ddp_run, single_run)


#: FSDP on CPU: Lightning's ModelParallelStrategy (FSDP2) over 2 data-parallel processes, saving one
#: full checkpoint file (as docs/training.md gives it)
FSDP2 = json.dumps({"class_path": "lightning.pytorch.strategies.ModelParallelStrategy",
                    "init_args": {"data_parallel_size": 2, "tensor_parallel_size": 1,
                                  "save_distributed_checkpoint": False}})


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory) -> Path:
    """points_flow, 4 steps on 2 processes sharded by FSDP2, with 128 samples each, checkpoints at
    step 2."""
    return _shared(tmp_path_factory, "fsdp", lambda root: _fit(
        "points_flow", root, *EVERY_2, "--trainer.callbacks.dirpath", str(root / "every"), strategy=FSDP2,
        **BIG))


def test_fsdp2_ships_the_full_ema_weights_that_sample_loads(fsdp_run, tmp_path):
    last = _last(fsdp_run)
    ckpt = read_checkpoint(last)
    assert ckpt["global_step"] == 4
    _check_ema_agrees(ckpt)  # the shards' averages, gathered, agree on both ranks and are what ships
    model = load(last)  # full tensors of the single-process shapes (loading is strict)
    shapes = {k: v.shape for k, v in ckpt["state_dict"].items()}
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes
    out = tmp_path / "out"  # `polyguide sample` in this process (a subprocess would only import torch again)
    assert main(["sample", "--checkpoint", str(last), "--cond", "shape=star", "--cond", "color=blue",
                 "--guidance", "cfg((shape, color), 3)", "--n", "6", "--steps", "4", "--seed", "3",
                 "--no-progress", "--out", str(out)]) == 0
    written = torch.load(out / "samples.pt")["samples"]
    expected = model.sample({"shape": "star", "color": "blue"}, "cfg((shape, color), 3)", n=6, steps=4,
                            seed=3)
    torch.testing.assert_close(written, expected.samples)


def test_fsdp2_follows_one_process_with_the_same_global_batch(fsdp_run, single_run):
    _follows(fsdp_run, single_run)


def test_fsdp2_resume_on_two_processes_is_exact(fsdp_run, tmp_path):
    _resumes_exactly(fsdp_run, tmp_path, strategy=FSDP2)


#: the FSDP2 runs of the other three families, then one with the strategy's default (tensor-parallel)
#: sizes, all in one group of two processes (:func:`fsdp_families`)
FAMILIES = {"tokens_masked": "masked", "tokens_ar": "autoregressive", "points_diffusion": "diffusion"}


@pytest.fixture(scope="module")
def fsdp_families(tmp_path_factory) -> Path:
    """Each recipe of :data:`FAMILIES` for 2 steps on 2 processes sharded by FSDP2 (into ``<recipe>/``),
    then points_flow with ``ModelParallelStrategy``'s default sizes (``tensor_parallel/``), as
    ``polyguide fit`` commands run one after another by the two processes of one group that the test
    launches itself (``fit_sequence.py``): three separate commands would start six processes."""
    return _shared(tmp_path_factory, "fsdp-families", _fit_in_sequence)


def _fit_in_sequence(root: Path) -> None:
    commands = [_args(recipe, root / recipe, "--trainer.devices", "2", "--trainer.strategy", FSDP2,
                      steps=2)[3:] for recipe in FAMILIES]
    default_sizes = '{"class_path": "lightning.pytorch.strategies.ModelParallelStrategy"}'
    commands.append(_args("points_flow", root / "tensor_parallel", "--trainer.devices", "2",
                          "--trainer.strategy", default_sizes, steps=1)[3:])
    (root / "commands.json").write_text(json.dumps(commands))
    script = [sys.executable, str(Path(__file__).with_name("fit_sequence.py")), str(root / "commands.json"),
              str(root / "codes")]
    outs = _launch(script, [dict(NODE_RANK="0", LOCAL_RANK=str(r)) for r in (0, 1)])
    (root / "stderr.txt").write_text("".join(o[1] for o in outs))


def _codes(root: Path) -> list[list[int]]:
    """Each process's exit codes of the commands of :func:`fsdp_families`."""
    return [json.loads((root / f"codes.rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.parametrize(("index", "recipe"), list(enumerate(FAMILIES)))
def test_fsdp2_trains_every_other_family(fsdp_families, index, recipe):
    """points_flow (the flow family) is the recipe of the tests above."""
    stderr = (fsdp_families / "stderr.txt").read_text()
    assert [codes[index] for codes in _codes(fsdp_families)] == [0, 0], stderr[-3000:]
    assert "sync_dist=True" not in stderr
    ckpt = read_checkpoint(_last(fsdp_families / recipe))
    assert ckpt["global_step"] == 2 and ckpt["hyper_parameters"]["family"] == FAMILIES[recipe]
    _check_ema_agrees(ckpt)


def test_fsdp2_with_tensor_parallel_sizes_is_one_line(fsdp_families):
    """The strategy's default sizes on one node mean tensor parallelism, which polyguide does not do."""
    assert [codes[-1] for codes in _codes(fsdp_families)] == [2, 2]
    stderr = (fsdp_families / "stderr.txt").read_text()
    assert "tensor_parallel_size=2" in stderr and "Traceback" not in stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(cmd: list[str], envs: list[dict[str, str]]) -> list[tuple[str, str]]:
    """Start ``cmd`` once per entry of ``envs`` (its extra environment) on the loopback address
    (``MASTER_ADDR``, a free ``MASTER_PORT``), as a cluster's launcher would; every one must exit 0.
    Returns each one's (standard output, standard error)."""
    port = str(_free_port())
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, **extra))
             for extra in envs]
    try:
        outs = [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0] * len(procs), [o[1][-3000:] for o in outs]
    return outs


def test_two_nodes_on_the_loopback_address(tmp_path):
    """Two launcher processes, one per "node", as Lightning documents for a general cluster:
    ``MASTER_ADDR``, ``MASTER_PORT``, ``NODE_RANK`` and ``--trainer.num_nodes 2``; the recipe is the
    masked family's (its ``ddp`` run on two processes)."""
    cmd = _args("tokens_masked", tmp_path, "--trainer.devices", "1", "--trainer.num_nodes", "2",
                "--trainer.strategy", "ddp", steps=2)
    outs = _launch(cmd, [dict(NODE_RANK=str(r)) for r in (0, 1)])
    assert not any("sync_dist=True" in o[1] for o in outs)
    ckpt = read_checkpoint(_last(tmp_path))
    assert ckpt["global_step"] == 2 and ckpt["hyper_parameters"]["family"] == "masked"
    _check_ema_agrees(ckpt)
