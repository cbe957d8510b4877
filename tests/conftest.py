"""Shared fixtures. Tests never touch the network: the hub is forced offline."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # one thread per xdist worker (and per process it starts): `-n 2` workers each using every core
    # oversubscribe the machine and made the small models' training tests several times slower
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import lightning  # noqa: F401  (see below)
import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

# Lightning binds a log handler to sys.stderr when it is first imported. Imported first inside a
# test that uses capsys, the handler keeps that test's stream, which pytest closes afterwards, and a
# later "Seed set to 0" becomes a "--- Logging error ---" traceback in another test's stderr.
# Imported here, before any test runs, it binds pytest's session-wide capture instead.

from framework.toy.model import GaussianMixtureToy


def constant_alpha_sigma(alpha: float = 0.6, sigma: float = 0.8):
    """``t ↦ (α, σ)`` independent of t: a fixed point on a VP path (α² + σ² = 1)."""
    return lambda t: (torch.full(t.shape, alpha, dtype=torch.float64),
                      torch.full(t.shape, sigma, dtype=torch.float64))


@pytest.fixture
def toy() -> GaussianMixtureToy:
    return GaussianMixtureToy(constant_alpha_sigma())


class Evil:
    """A malicious pickle: unpickling it calls ``open(marker, "w")``, so ``marker`` appears if any code
    from the file ran (``pickle.dumps(Evil(marker))``, or ``torch.save`` of it or of a dict holding it)."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def evil() -> type[Evil]:
    return Evil


@pytest.fixture
def refusal(capsys):
    """``refusal(call)``: the one line a refused command gives, from a ``CheckpointError`` it raises or
    from stderr when it returns exit code 2 (the CLI's answer to user errors)."""
    from framework.model.checkpoints import CheckpointError

    def run(call) -> str:
        try:
            code = call()
        except CheckpointError as e:
            return str(e)
        assert code == 2, code
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "Traceback" not in err, err
        return err
    return run


@pytest.fixture
def fit_one_step_and_validate(tmp_path):
    """``run(model, data) -> Trainer``: one training step, then one validation pass (which samples and
    scores the model's ``val_guidance``), on the CPU, without logger or checkpoints."""

    def run(model, data):
        import lightning as L  # here, not at the top: most tests never train

        trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1,
                            val_check_interval=1, num_sanity_val_steps=0, default_root_dir=tmp_path)
        trainer.fit(model, datamodule=data)
        return trainer

    return run


@pytest.fixture
def never_block():
    """A read that blocks (a FIFO given as an input) fails the test after 60 s instead of hanging."""
    import signal

    def stuck(*_):
        raise AssertionError("blocked reading an input")

    old = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)
