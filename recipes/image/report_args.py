"""The options the image report scripts share (``--out``, ``--n``, ``--steps``, ``--seed``).

The scripts run as ``python recipes/image/<script>.py``, so they import this module as a sibling
(``from report_args import report_parser``) inside their ``__main__`` block.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["report_parser"]


def report_parser(doc: str | None, n: int, steps: int = 30, seed: int | None = None,
                  out: Path = Path("docs/results")) -> argparse.ArgumentParser:
    """A parser with ``--out`` (results folder), ``--n`` (requests per row), ``--steps`` (sampler
    steps) and, when ``seed`` is given, ``--seed`` (the requests' and the noise's seed)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=out)
    ap.add_argument("--n", type=int, default=n, help="requests per row")
    ap.add_argument("--steps", type=int, default=steps, help="sampler steps")
    if seed is not None:
        ap.add_argument("--seed", type=int, default=seed, help="the requests' and the noise's seed")
    return ap
