"""Bring your own pretrained model: diffusers / transformers pipelines as polyguide models.

``load(path_or_id)`` reads what a folder (saved with the library's ``save_pretrained``) or a hub id
holds, refuses what it does not support (one line naming what is), and wraps the pipeline's own
modules — text encoders and tokenizers, VAE or audio codec, scheduler, denoiser or LM — as a
:class:`~framework.pretrained.base.PretrainedModel` that samples with any guidance expression::

    from framework import pretrained
    sd = pretrained.load("path/to/stable-diffusion")          # a StableDiffusionPipeline folder
    out = sd.sample({"text": "a red cube"}, "cfg(text, 7.5)", n=4, steps=30, seed=0)
    out.media                                                # [4, 3, H, W] in [0, 1]

Supported: :data:`~framework.pretrained.loading.SUPPORTED`. Loading never runs code from the
folder (no ``trust_remote_code``; only diffusers / transformers components; safetensors preferred).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from framework.core.errors import one_line
from framework.pretrained.base import PretrainedModel
from framework.pretrained.loading import SUPPORTED, PretrainedError, identify

__all__ = ["SUPPORTED", "PretrainedError", "PretrainedModel", "load"]


def load(path_or_id: str, device: str | None = None, **kwargs: Any) -> PretrainedModel:
    """The pipeline at ``path_or_id`` as a polyguide model.

    Args:
        path_or_id: a folder written by ``save_pretrained`` (offline), or a hub id (``owner/name``)
            when the hub is reachable.
        device: where to run (default: CPU).
        kwargs: passed to the library's ``from_pretrained`` (e.g. ``torch_dtype``).

    Raises:
        PretrainedError: not a supported pipeline (the message lists the supported ones).
    """
    cls, target = identify(str(path_or_id))
    module, _, name = target.partition(":")
    wrapper = getattr(importlib.import_module(module), name)
    try:
        with quiet_library_loading():
            model = wrapper.load(str(path_or_id), **kwargs)
    except PretrainedError:
        raise
    except (OSError, ValueError, KeyError) as e:  # missing or broken weights, configs, tokenizer files
        raise PretrainedError(f"{path_or_id}: its {cls} could not be loaded: {one_line(e)}") from None
    return model.to(device) if device is not None else model


@contextmanager
def quiet_library_loading() -> Iterator[None]:
    """transformers' and diffusers' progress bars and warnings (e.g. "accelerate is not installed")
    off while loading; both libraries' settings are restored afterwards."""
    from diffusers.utils import logging as dlog

    from framework.core.hf import quiet_loading

    bars, verbosity = dlog.is_progress_bar_enabled(), dlog.get_verbosity()
    dlog.disable_progress_bar()
    dlog.set_verbosity_error()
    try:
        with quiet_loading():
            yield
    finally:
        dlog.set_verbosity(verbosity)
        if bars:
            dlog.enable_progress_bar()
