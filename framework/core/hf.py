"""Loading transformers models from local folders without console noise.

``from_pretrained`` prints a "Loading weights" progress bar (transformers 5) and, for keys a class
does not use, a load report; neither tells a user of ``polyguide sample`` anything. Loaders of the
models polyguide ships (the MiniLM caption encoder, the audio codec) run inside
:func:`quiet_loading`, which silences both and puts transformers' settings back afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["quiet_loading"]


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Within the block, transformers shows no progress bars and logs only errors."""
    from transformers.utils import logging

    bars, verbosity = logging.is_progress_bar_enabled(), logging.get_verbosity()
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
