"""polyguide_spectra: 1-D signals as a polyguide modality (written by ``polyguide new-modality spectra``).

A signal is a sum of four sinusoids with 1, 2, 4 and 8 cycles per window; one of them dominates:
the categorical condition ``peak`` says which, the scalar ``level`` its amplitude.
``pyproject.toml`` registers the plugin::

    [project.entry-points."polyguide.modalities"]
    spectra = "polyguide_spectra:SpectraModality"

This module imports no Lightning: ``polyguide sample`` imports it, and only training needs the
data module (``data.py``), which ``LazyClasses`` imports on first use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from framework.core.atomic import atomic_save
from framework.core.plugins import Codec, LazyClasses, Modality

from .codec import SpectraCodec
from .signals import LEVELS, PEAKS

__all__ = ["SpectraModality"]


class SpectraModality(Modality):
    """1-D signals ``[B, 1, length]`` with the conditions ``peak`` and ``level``."""

    name = "spectra"
    description = "1-D signals: sums of four sinusoids, one dominant (conditions peak, level)"
    representations = MappingProxyType({"patches": SpectraCodec})  # name → Codec factory
    datamodules = LazyClasses({"spectra": f"{__package__}.data:SpectraData"})  # imported on first use
    conditions = MappingProxyType({"peak": " | ".join(PEAKS) + " (cycles per window of the strongest wave)",
                                   "level": f"{LEVELS[0]} … {LEVELS[1]} (the strongest wave's amplitude)"})
    recipes_dir = Path(__file__).resolve().parent / "recipes"

    def write(self, media: torch.Tensor, out: Path, *, rows: Sequence[str] | None = None,
              title: str | None = None) -> list[Path]:
        """``spectra.npy``: the signals ``[B, 1, length]`` as float32 (not ``rows`` or ``title``)."""
        out.mkdir(parents=True, exist_ok=True)
        array = media.detach().cpu().float().numpy()
        return [atomic_save(out / "spectra.npy", lambda f: np.save(f, array))]

    def judge(self, specs: Mapping[str, Any], codec: Codec, cache_dir: Path):
        """The metrics of ``polyguide eval`` and validation (:class:`.judge.SpectraJudge`)."""
        from .judge import SpectraJudge

        return SpectraJudge()
