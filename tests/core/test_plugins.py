"""The modality plugin registry, and an external plugin installed for real.

``polyguide new-modality spectra`` writes a standalone package (the example in ``docs/plugins.md``).
The ``spectra`` fixture writes it and pip-installs it into this environment, offline and without
build isolation, and uninstalls it at the end of the module; the tests then discover it through
its entry point, and check its data, codec and judge. (One training step, sampling, the writer, and
fit → sample → eval of its recipe from the command line run on the same project, registered
without installing, in ``tests/plugin/test_plugin_scaffold.py``.)
"""

from __future__ import annotations

import fcntl
import functools
import importlib
import importlib.metadata
import importlib.util
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from framework.core import plugins
from framework.core.plugins import PluginError
from framework.scaffold import new_modality
from framework.training.module import GenerativeModule

DIST = "polyguide-spectra"
TINY = {"dim": 32, "depth": 1, "heads": 2}


# ---------------------------------------------------------------------- the registry itself
def test_image_is_a_builtin_plugin():
    from modalities.image import ImageModality

    assert "image" in plugins.available()
    image = plugins.get("image")
    assert isinstance(image, ImageModality) and image.name == "image"
    assert image.codec("patches", size=16, patch=2).shape == (64, 12)


def test_unknown_modality_names_the_installed_ones():
    with pytest.raises(PluginError, match=r"no modality 'nope' is installed") as e:
        plugins.get("nope")
    assert "'image'" in str(e.value) and plugins.GROUP in str(e.value)


def test_unknown_or_misused_representation_is_a_plugin_error():
    image = plugins.get("image")
    with pytest.raises(PluginError, match=r"no representation 'pixels'.*\['palette', 'patches'\]"):
        image.codec("pixels")
    with pytest.raises(PluginError, match="colour"):
        image.codec("patches", colour=3)


@pytest.mark.parametrize(("value", "error"), [
    ("modalities.image:ImageModality", "loads a modality named 'image'"),
    ("framework.core.plugins:Codec", "is not a framework.core.plugins.Modality subclass"),
    ("no_such_package_xyz:Thing", "failed to load"),
])
def test_broken_plugins_are_reported_not_hidden(monkeypatch, value, error):
    ep = importlib.metadata.EntryPoint(name="broken", value=value, group=plugins.GROUP)
    monkeypatch.setattr(plugins, "_entry_points", functools.cache(lambda: {"broken": ep}))
    with pytest.raises(PluginError, match=error):
        plugins.get("broken")


# ---------------------------------------------------------------------- an external plugin
def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=120)


def _forget_spectra() -> None:
    """Make this process re-read the installed packages and entry points."""
    for name in [m for m in sys.modules if m.split(".")[0] == "polyguide_spectra"]:
        sys.modules.pop(name)
    importlib.invalidate_caches()  # the path finders' directory and metadata caches
    plugins.refresh()  # the registry is read once per process


@pytest.fixture(scope="module")
def spectra(tmp_path_factory):
    """``polyguide_spectra`` installed into this environment for the module's tests."""
    # the test extra pins setuptools >= 70.1 (builds without `wheel`); `make test` runs in .venv
    assert sys.prefix != sys.base_prefix, "this test installs a package: run it from a virtual environment"
    setuptools_version = tuple(int(p) for p in importlib.metadata.version("setuptools").split(".")[:2])
    assert setuptools_version >= (70, 1), f"setuptools {setuptools_version} needs `wheel` to build offline"
    # pytest-xdist workers share this environment: one install at a time, held until uninstalled.
    with open(tmp_path_factory.getbasetemp().parent / "polyguide-spectra.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        src = new_modality("spectra", tmp_path_factory.mktemp("spectra"))
        done = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", "--no-cache-dir",
                    "--force-reinstall", "--quiet", str(src))
        assert done.returncode == 0, f"pip install failed:\n{done.stdout}\n{done.stderr}"
        _forget_spectra()
        try:
            yield plugins.get("spectra")
        finally:
            gone = _pip("uninstall", "-y", "--quiet", DIST)
            _forget_spectra()
        assert gone.returncode == 0, f"pip uninstall failed:\n{gone.stdout}\n{gone.stderr}"
        assert "spectra" not in plugins.available()
        assert importlib.util.find_spec("polyguide_spectra") is None


def test_installed_plugin_is_discovered(spectra):
    import polyguide_spectra as ps
    from polyguide_spectra.data import SpectraData

    assert "spectra" in plugins.available() and "image" in plugins.available()
    assert type(spectra) is ps.SpectraModality
    # the installed copy, not the project new_modality wrote
    assert Path(ps.__file__).resolve().is_relative_to(Path(sysconfig.get_path("purelib")).resolve())
    assert [r.name for r in spectra.recipes()] == ["spectra_flow.yaml"]
    assert set(spectra.conditions) == {"peak", "level"} and spectra.datamodules["spectra"] is SpectraData


def test_spectra_data_and_codec(spectra):
    from polyguide_spectra.signals import PEAKS

    batch = next(iter(spectra.datamodules["spectra"](n_train=64, batch_size=16).train_dataloader()))
    media, peak = batch["media"], batch["conditions"]["peak"]
    assert media.shape == (16, 1, 32) and media.dtype == torch.float32 and peak.shape == (16,)
    # the label is the dominant frequency (1, 2, 4 or 8 cycles per window)
    strongest = torch.fft.rfft(media[:, 0]).abs().argmax(-1)
    assert strongest.tolist() == [int(PEAKS[p]) for p in peak]
    codec = spectra.codec("patches", length=32, patch=4)
    x = codec.encode(media)
    assert x.shape == (16, *codec.shape) == (16, 8, 4) and codec.vocab_size is None
    assert x.abs().max() < 1
    torch.testing.assert_close(codec.decode(x), media)
    with pytest.raises(ValueError, match=r"expected signals \[B, 1, 32\]"):
        codec.encode(media[:, :, :16])
    with pytest.raises(PluginError, match=r"representation 'patches': patch 4 does not divide length 30"):
        spectra.codec("patches", length=30, patch=4)


def test_judge_scores_media_and_validation_logs_it(spectra, tmp_path, fit_one_step_and_validate):
    """The documented metrics contract: judge(...).evaluate(media, requested), used by validation."""
    from polyguide_spectra.data import SpectraData
    from polyguide_spectra.signals import PEAKS, make_signals

    media, peak, level = make_signals(64, seed=5)
    judge = spectra.judge({}, spectra.codec("patches"), tmp_path)
    assert judge.evaluate(media, {"peak": peak}) == {"acc_peak": 1.0}  # real signals: their own labels
    # the scalar level: measured from the spectrum, and requested values drawn by the judge's hook
    assert judge.evaluate(media, {"level": level})["level_err"] < 1e-5
    assert judge.evaluate(media, {"level": level.flip(0)})["level_err"] > 0.1
    drawn = judge.request("level", 5, torch.Generator().manual_seed(0))
    assert drawn.shape == (5,) and bool(((drawn >= 0.5) & (drawn <= 1.5)).all())
    assert judge.request("peak", 5, torch.Generator()) is None
    wrong = judge.evaluate(media, {"peak": (peak + 1) % 4})["acc_peak"]
    assert wrong == 0.0 and judge.evaluate(media, {}) == {}

    torch.manual_seed(0)
    model = GenerativeModule(family="flow", modality="spectra",
                             representation={"name": "patches", "length": 32, "patch": 4},
                             conditions=[{"name": "peak", "labels": list(PEAKS)}], backbone=TINY,
                             guidance=["cfg(peak, 2)"], val_guidance={"cfg2": "cfg(peak, 2)"}, val_samples=8,
                             val_steps=2)
    trainer = fit_one_step_and_validate(model, SpectraData(n_train=32, n_val=16, batch_size=16))
    metrics = trainer.callback_metrics
    assert 0.0 <= float(metrics["val/cfg2/acc_peak"]) <= 1.0
    assert float(metrics["val/cfg2/nfe"]) == 2 * 2  # 2 steps, cfg: 2 branches
