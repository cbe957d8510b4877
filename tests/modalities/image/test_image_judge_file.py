"""The image judge's cached classifier is read with ``weights_only=True``: a pickle in its place runs
nothing, and a file that is not its classifier gets one line naming it."""

import pickle
from pathlib import Path

import pytest
import torch

from framework.cli.main import main
from framework.model.checkpoints import CheckpointError, read_checkpoint
from modalities.image.metrics import AttributeClassifier, ImageJudge

SHIPPED = Path(__file__).resolve().parents[3] / "recipes" / "image" / "checkpoints"
LABELS = {"shape": 4}


def _split(n: int):
    images = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(n))
    return images, {"shape": torch.arange(n) % 4}


CACHES = {
    "object in a torch file": (lambda p, m, evil: torch.save(evil(m), p), "refused"),
    "object among the weights": (lambda p, m, evil: torch.save({**AttributeClassifier(3, LABELS).state_dict(),
                                                          "x": evil(m)}, p), "refused"),
    "bare pickle": (lambda p, m, evil: p.write_bytes(pickle.dumps(evil(m))), "refused"),
}


@pytest.mark.fault("malicious file")
@pytest.mark.parametrize("case", list(CACHES))
def test_a_malicious_classifier_cache_runs_nothing(tmp_path, evil, case):
    make, expected = CACHES[case]
    marker, cache = tmp_path / "PWNED", tmp_path / "classifier-shapes16.pt"
    make(cache, marker, evil)
    with pytest.raises(CheckpointError, match=expected) as info:
        ImageJudge(_split(8), _split(4), LABELS, cache)
    assert str(cache) in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


@pytest.mark.fault("bad checkpoint file")
def test_a_classifier_of_other_heads_is_refused(tmp_path):
    cache = tmp_path / "classifier.pt"
    torch.save(AttributeClassifier(3, {"digit": 10}).state_dict(), cache)
    with pytest.raises(CheckpointError, match="does not hold this judge's classifier"):
        ImageJudge(_split(8), _split(4), LABELS, cache)


@pytest.mark.fault("malicious file")
def test_eval_refuses_a_malicious_classifier_cache_before_sampling(tmp_path, evil, refusal):
    marker = tmp_path / "PWNED"
    torch.save(evil(marker), tmp_path / "classifier-shapes16.pt")
    argv = ["eval", "--checkpoint", str(SHIPPED / "shapes_flow.ckpt"), "--cache", str(tmp_path),
            "--n", "2", "--steps", "2", "--no-progress"]
    msg = refusal(lambda: main(argv))
    assert "refused" in msg and "classifier-shapes16.pt" in msg
    assert not marker.exists()


def test_the_shipped_classifiers_load_safely():
    for name in ("classifier-shapes16.pt", "classifier-digits16.pt"):
        state = read_checkpoint(SHIPPED / name)  # weights_only=True
        assert state and all(isinstance(v, torch.Tensor) for v in state.values())
