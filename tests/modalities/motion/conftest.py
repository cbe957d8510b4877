"""Shared pieces of the motion tests."""

import pytest

from framework.training.module import GenerativeModule
from modalities.motion.actions import ACTIONS
from modalities.motion.trajectory import DIM


def tiny_motion_model() -> GenerativeModule:
    """An untrained flow model on 64-frame features, conditioned on trajectory + action (~30 k params)."""
    return GenerativeModule(
        family="flow", modality="motion",
        representation={"name": "features", "frames": 64, "frames_per_token": 4},
        conditions=[{"name": "trajectory", "kind": "sequence", "dim": DIM, "encoder": "motion/trajectory"},
                    {"name": "action", "labels": list(ACTIONS)}],
        backbone={"dim": 32, "depth": 1, "heads": 2}, guidance=["cfg((trajectory, action), 2)"])


@pytest.fixture(scope="session")
def make_motion_model():
    """The factory :func:`tiny_motion_model`, for tests and module-scoped fixtures."""
    return tiny_motion_model
