"""The one way polyguide reads a checkpoint: safely, with one clear line for every bad file.

:func:`read_checkpoint` loads any torch file with ``torch.load(weights_only=True)`` (tensors and
plain data only: a pickle that would import or call anything is refused before it runs) and turns
each way a file can be wrong (missing, a directory, empty, truncated, random bytes, text, code)
into a :class:`CheckpointError` whose message is one line naming the file and the fault.
:func:`load_checkpoint` also checks that it is a polyguide checkpoint (hyper-parameters + weights of
a :class:`~framework.model.generative.GenerativeModel`); :func:`load_model` rebuilds the model from it,
and :func:`check_compatible` checks a ``weak`` model against the main one before sampling.

A checkpoint names only registered things (family, modality, representation, encoder names); the
``_instantiator`` import path that Lightning's CLI stores is never imported.
"""

from __future__ import annotations

import inspect
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from framework.core import allowlist
from framework.core.errors import CheckpointError
from framework.model.compat import check_compatible

if TYPE_CHECKING:
    from framework.model.generative import GenerativeModel

__all__ = ["CheckpointError", "build_model", "check_compatible", "export", "load_checkpoint", "load_model",
           "read_checkpoint"]

# what LightningCLI stores in hyper_parameters; recognised, never imported
_LIGHTNING_INSTANTIATOR = "lightning.pytorch.cli.instantiate_module"
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)  # torch.serialization's MAGIC_NUMBER


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0].strip() if text else type(e).__name__


def _sniff(path: Path, head: bytes) -> str | None:
    """What a non-torch file looks like, for the error message (``None``: it may be a torch file)."""
    if head.startswith(_ZIP_MAGIC):
        return None if zipfile.is_zipfile(path) else \
            "is truncated (an incomplete zip archive; an interrupted save?)"
    if head.startswith(_LEGACY_MAGIC):  # torch's pre-1.6 format, read by torch.load's weights-only unpickler
        return None
    if head[:1] == b"\x80":
        return "is a plain pickle, not a torch checkpoint: refused (unpickling can run code)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\t\r\n" for c in text):
        return f"is a text file, not a checkpoint (it starts with {text[:24]!r})"
    return f"is not a torch checkpoint (unrecognised bytes {head[:8].hex(' ')} …)"


def read_checkpoint(path: str | Path) -> Any:
    """Load a torch file safely (``weights_only=True``, on the CPU).

    Raises:
        CheckpointError: one line naming ``path`` and what is wrong with it.
    """
    from framework.core.files import regular_file

    path = Path(path)
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except OSError:  # e.g. a name longer than the system allows: regular_file names it
        exists, is_dir = True, False
    if not exists:
        raise CheckpointError(f"checkpoint {path}: no such file")
    if is_dir:
        raise CheckpointError(f"checkpoint {path}: is a directory, not a checkpoint file")
    regular_file(path, "checkpoint", CheckpointError, empty_ok=True)  # a FIFO or device: never opened
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise CheckpointError(f"checkpoint {path}: cannot be read ({e.strerror or _one_line(e)})") from e
    if size == 0:
        raise CheckpointError(f"checkpoint {path}: is empty (0 bytes; an interrupted save?)")
    problem = _sniff(path, head)
    if problem:
        raise CheckpointError(f"checkpoint {path}: {problem}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(f"checkpoint {path}: refused: it holds Python objects{what} that would run "
                              "code when loaded; polyguide loads only tensors and plain data") from e
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"checkpoint {path}: is damaged or not a torch checkpoint "
                              f"({_one_line(e)})") from e


def _init_parameters() -> set[str]:
    from framework.model.generative import GenerativeModel

    return set(inspect.signature(GenerativeModel.__init__).parameters) - {"self"}


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a polyguide checkpoint (a training checkpoint or an export) and check its structure.

    Returns the checkpoint dict: ``state_dict`` (weights), ``hyper_parameters`` (the model's
    constructor arguments, without Lightning's ``_instantiator``) and whatever else it holds.

    Raises:
        CheckpointError: one line naming ``path``: unreadable files (see :func:`read_checkpoint`),
            a bare ``state_dict``, a checkpoint without hyper-parameters, one of another module.
    """
    ckpt = read_checkpoint(path)
    where = f"checkpoint {path}"
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{where}: holds a {type(ckpt).__name__}, not a polyguide checkpoint")
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise CheckpointError(f"{where}: is a bare state_dict ({len(ckpt)} tensors) without the hyper-"
                              "parameters that rebuild the model; give a polyguide fit or export checkpoint")
    if "state_dict" not in ckpt:
        keys = ", ".join(sorted(map(str, ckpt))[:6]) or "nothing"
        raise CheckpointError(f"{where}: is not a polyguide checkpoint (no state_dict; it holds {keys})")
    hp = ckpt.get("hyper_parameters")
    if not isinstance(hp, Mapping) or not hp:
        raise CheckpointError(f"{where}: has no hyper-parameters, so it cannot rebuild its model "
                              "(saved by another LightningModule, or without save_hyperparameters?)")
    hp = dict(hp)
    instantiator = hp.pop("_instantiator", None)
    if instantiator is not None and instantiator != _LIGHTNING_INSTANTIATOR:
        raise CheckpointError(f"{where}: refused: it names an instantiator {instantiator!r} (an import "
                              "path); polyguide imports nothing a checkpoint names")
    try:  # a class_path in e.g. family_args would be built by `polyguide fit --ckpt_path`
        allowlist.check_class_paths(hp, where)
    except allowlist.ClassNotAllowed as e:
        raise CheckpointError(str(e)) from None
    unknown = sorted(set(map(str, hp)) - _init_parameters())
    if unknown:
        raise CheckpointError(f"{where}: is a checkpoint of another module (hyper-parameters "
                              f"{', '.join(unknown[:5])} are not GenerativeModule's)")
    if not isinstance(ckpt["state_dict"], Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in ckpt["state_dict"].items()):
        raise CheckpointError(f"{where}: its state_dict is not a mapping of names to tensors")
    return {**ckpt, "hyper_parameters": hp}


def load_model(path: str | Path, map_location: str | torch.device = "cpu",
               cls: type[GenerativeModel] | None = None) -> GenerativeModel:
    """Rebuild a model from a checkpoint alone (eval mode): a ``cls`` instance, by default
    :class:`~framework.model.generative.GenerativeModel` (sampling; no Lightning); training passes
    its trainable subclass (:func:`framework.training.module.load`).

    Raises:
        CheckpointError: one line naming ``path``: a bad file (see :func:`load_checkpoint`), hyper-
            parameters that do not build a model, or weights that do not fit it.

    A shipped checkpoint may be named as the docs do, ``recipes/<modality>/checkpoints/<name>.ckpt``,
    from any directory, source checkout or installed package (:func:`framework.core.shipped.resolve`).
    """
    from framework.core.shipped import resolve

    path = resolve(path)
    return build_model(load_checkpoint(path), path, cls).to(map_location)


def build_model(ckpt: Mapping[str, Any], path: str | Path,
                cls: type[GenerativeModel] | None = None) -> GenerativeModel:
    """The model a :func:`load_checkpoint` dict describes, with its weights (eval mode, CPU): a
    ``cls`` instance, by default :class:`~framework.model.generative.GenerativeModel`; errors name
    ``path``."""
    if cls is None:
        from framework.model.generative import GenerativeModel as cls

    from framework.core.sizes import SizeError, expecting

    hp = dict(ckpt["hyper_parameters"])
    rep = hp.get("representation")
    if isinstance(rep, Mapping) and "cache_dir" in rep:  # a file someone sent must not choose where we write
        hp["representation"] = {k: v for k, v in rep.items() if k != "cache_dir"}
    try:
        with expecting(ckpt["state_dict"], f"checkpoint {path}"):  # declared sizes vs the weights present
            model = cls(**hp)
    except SizeError as e:
        where = f"checkpoint {path}: "
        if not str(e).startswith(where):  # a file the checkpoint names (a tokenizer) is at fault
            raise CheckpointError(f"{where}{e}") from None
        raise CheckpointError(f"{where}its weights do not fit the model its hyper-parameters "
                              f"describe: {str(e).removeprefix(where)}") from None
    except (ValueError, TypeError, KeyError, ImportError, OSError) as e:
        raise CheckpointError(f"checkpoint {path}: its hyper-parameters do not build a model: "
                              f"{_one_line(e)}") from e
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        detail = " ".join(str(e).split())
        raise CheckpointError(f"checkpoint {path}: its weights do not fit the model its hyper-parameters "
                              f"describe: {detail[:300]}") from e
    return model.eval()


def export(checkpoint: str | Path, dest: str | Path) -> Path:
    """Strip a training checkpoint to what sampling needs (hyper-parameters + weights, which are the
    EMA weights when trained with ``EMAWeightAveraging``), written atomically; ``load`` reads it.

    The optimizer state and callbacks are dropped, so a shipped checkpoint is about a third of the
    training checkpoint's size. The source is read with ``weights_only=True`` and must rebuild its
    model (:func:`~framework.model.checkpoints.load_model`): a bad file raises
    :class:`~framework.model.checkpoints.CheckpointError` and nothing is written.
    """
    from framework.core.atomic import atomic_save

    ckpt = load_checkpoint(checkpoint)
    from framework.model.generative import GenerativeModel

    build_model(ckpt, checkpoint, GenerativeModel)  # refuse now what `load` would refuse later
    keep = {k: ckpt[k] for k in ("state_dict", "hyper_parameters", "pytorch-lightning_version") if k in ckpt}
    return atomic_save(dest, lambda f: torch.save(keep, f))
