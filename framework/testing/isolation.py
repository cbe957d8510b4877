"""The ``sampling_without_lightning`` check: what a fresh interpreter imports while it samples.

Sampling (``polyguide sample``, ``eval``, :class:`~framework.model.generative.GenerativeModel`) must
not import Lightning, which only training needs; a plugin whose entry-point module imports its data
module at the top breaks that for every sample. Checked in a subprocess, since the test process
itself has usually imported Lightning already.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from typing import Any, Protocol

from framework.testing.errors import require as _require

__all__ = ["lightning_imports", "sampling_without_lightning"]


class Contract(Protocol):
    """What these checks read of a :class:`framework.testing.contract.Contract`."""

    case: Any

    def hparams(self) -> dict[str, Any]: ...

    def raw_conditions(self, n: int) -> dict[str, Any]: ...


def lightning_imports(contracts: Sequence[Contract]) -> dict[str, list[str]]:
    """For each contract in turn, in one fresh interpreter: get its plugin, build its model as sampling
    does (:class:`~framework.model.generative.GenerativeModel`), sample one step and write the sample.
    Returns modality name → the ``lightning`` modules imported by then (cumulative: once one plugin
    imported Lightning, the later ones cannot be judged, so list the suspect last)."""
    jobs = [{"hparams": c.hparams(), "raw": {k: v.tolist() for k, v in c.raw_conditions(1).items()}}
            for c in contracts]
    script = textwrap.dedent(f"""
        import json, sys, tempfile
        from pathlib import Path
        import torch
        from framework.core import plugins
        from framework.model.generative import GenerativeModel
        for job in json.loads({json.dumps(json.dumps(jobs))}):
            hp, raw = job["hparams"], {{k: torch.tensor(v) for k, v in job["raw"].items()}}
            m = plugins.get(hp["modality"])
            out = GenerativeModel(**hp).eval().sample(raw, n=1, steps=1, seed=0)
            with tempfile.TemporaryDirectory() as d:
                m.write(out.media, Path(d))
            heavy = [k for k in sys.modules if k.split(".")[0] in ("lightning", "pytorch_lightning")]
            print(json.dumps([hp["modality"], sorted(heavy)]))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    names = ", ".join(repr(c.case.modality) for c in contracts)
    _require(done.returncode == 0,
             f"plugin {names}: sampling in a fresh interpreter failed:\n{done.stderr[-2000:]}")
    return dict(json.loads(line) for line in done.stdout.splitlines() if line.startswith("["))


def sampling_without_lightning(contracts: Sequence[Contract]) -> None:
    """:func:`lightning_imports` of ``contracts``; fail naming the first plugin whose sampling imported
    Lightning."""
    for name, lightning in lightning_imports(contracts).items():
        _require(not lightning, f"plugin {name!r}: sampling imported Lightning "
                                f"({', '.join(lightning[:3])} …): import LightningDataModule classes "
                                f"lazily (LazyClasses) and keep `import lightning` out of the modules "
                                f"sampling imports")
