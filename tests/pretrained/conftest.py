"""Tiny random-weight pipelines saved once per session with the libraries' ``save_pretrained``
(:mod:`framework.pretrained.tiny`); each fixture returns the folder, which the tests load both
through the library and through ``framework.pretrained.load``."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.pretrained.tiny import save_amused, save_musicgen, save_sd, save_sd3


@pytest.fixture(scope="session")
def sd_eps(tmp_path_factory) -> Path:
    return save_sd(tmp_path_factory.mktemp("sd") / "eps")


@pytest.fixture(scope="session")
def sd_v(tmp_path_factory) -> Path:
    return save_sd(tmp_path_factory.mktemp("sd") / "v", prediction="v_prediction")


@pytest.fixture(scope="session")
def pix2pix(tmp_path_factory) -> Path:
    return save_sd(tmp_path_factory.mktemp("p2p") / "p2p", "StableDiffusionInstructPix2PixPipeline",
                   scheduler="EulerAncestralDiscreteScheduler")


@pytest.fixture(scope="session")
def musicgen(tmp_path_factory) -> Path:
    return save_musicgen(tmp_path_factory.mktemp("musicgen") / "greedy")


@pytest.fixture(scope="session")
def musicgen_sampling(tmp_path_factory) -> Path:
    return save_musicgen(tmp_path_factory.mktemp("musicgen") / "sampling", do_sample=True)


@pytest.fixture(scope="session")
def musicgen_melody(tmp_path_factory) -> Path:
    return save_musicgen(tmp_path_factory.mktemp("melody") / "melody", melody=True)


@pytest.fixture(scope="session")
def sd3(tmp_path_factory) -> Path:
    return save_sd3(tmp_path_factory.mktemp("sd3") / "sd3")


@pytest.fixture(scope="session")
def amused(tmp_path_factory) -> Path:
    return save_amused(tmp_path_factory.mktemp("amused") / "amused")
