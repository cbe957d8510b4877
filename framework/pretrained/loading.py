"""Which pipeline a folder (or hub id) holds, and loading it without running code from it.

A diffusers pipeline folder has ``model_index.json`` naming its class (``_class_name``) and, per
component, the library and class that load it; a transformers model folder has ``config.json``
with its ``model_type``. We read those files as JSON, accept only the pipeline classes we wrap
(:data:`SUPPORTED`) whose components come from diffusers or transformers, and load them with the
library's own ``from_pretrained``: ``trust_remote_code`` stays off (a folder's ``.py`` files are
never imported), safetensors weights are preferred, and nothing is downloaded unless the argument
is a hub id and the hub is reachable (``HF_HUB_OFFLINE`` unset).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from framework.core.errors import UserError

__all__ = ["SUPPORTED", "PretrainedError", "identify", "read_json"]

#: pipeline class (diffusers ``_class_name`` or transformers ``model_type``) → our wrapper's module
SUPPORTED: dict[str, str] = {
    "StableDiffusionPipeline": "framework.pretrained.stable_diffusion:StableDiffusion",
    "StableDiffusionInstructPix2PixPipeline": "framework.pretrained.stable_diffusion:InstructPix2Pix",
    "StableDiffusion3Pipeline": "framework.pretrained.sd3:StableDiffusion3",
    "AmusedPipeline": "framework.pretrained.amused:Amused",
    "musicgen": "framework.pretrained.musicgen:MusicGen",
    "musicgen_melody": "framework.pretrained.musicgen:MusicGenMelody",
}
#: libraries a pipeline component may come from (anything else would import a module by name)
_LIBRARIES = ("diffusers", "transformers")


class PretrainedError(UserError, ValueError):
    """A folder or hub id that is not a pipeline we support, or a condition it cannot take."""


def supported_list() -> str:
    """The supported pipeline classes, for error messages."""
    return ", ".join(SUPPORTED)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; a broken file is a :class:`PretrainedError` naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PretrainedError(f"{path} is not readable JSON: {e}") from None
    if not isinstance(data, dict):
        raise PretrainedError(f"{path} holds {type(data).__name__}, not a JSON object")
    return data


def _hub_file(repo_id: str, name: str) -> Path | None:
    """``name`` of hub repository ``repo_id`` (a cached copy offline), or ``None`` if absent."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, name))
    except LocalEntryNotFoundError:  # (a subclass of EntryNotFoundError: first)
        if os.environ.get("HF_HUB_OFFLINE"):
            raise PretrainedError(f"{repo_id!r} is neither a folder nor in the local hub cache, and "
                                  "HF_HUB_OFFLINE is set; give a folder saved with save_pretrained") from None
        return None
    except EntryNotFoundError:
        return None
    except Exception as e:  # network, auth, malformed id: all one line for the user
        raise PretrainedError(f"{repo_id!r} is not a folder and could not be fetched from the hub: "
                              f"{type(e).__name__}: {e}") from None


def _config_files(path_or_id: str) -> tuple[Path | None, Path | None]:
    """``(model_index.json, config.json)`` of a folder or hub id (either may be ``None``)."""
    folder = Path(path_or_id).expanduser()
    if folder.is_dir():
        index, config = folder / "model_index.json", folder / "config.json"
        return (index if index.is_file() else None), (config if config.is_file() else None)
    if folder.exists():
        raise PretrainedError(f"{path_or_id} is a file; give the folder a pipeline was saved to "
                              f"(with save_pretrained) or a hub id")
    if path_or_id.count("/") != 1 or path_or_id.startswith((".", "/", "~")):
        raise PretrainedError(f"{path_or_id} is not a folder (nor a hub id like owner/name)")
    index = _hub_file(path_or_id, "model_index.json")
    return index, (None if index is not None else _hub_file(path_or_id, "config.json"))


def _check_components(index: Mapping[str, Any], where: str) -> None:
    """Every component of a diffusers ``model_index.json`` comes from diffusers or transformers
    (or is absent): a custom module would be imported by name, i.e. code would run."""
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or spec == [None, None]:
            continue
        if len(spec) != 2 or spec[0] not in _LIBRARIES:
            raise PretrainedError(f"{where}: component {name!r} is loaded by {spec!r}; only components of "
                                  f"{' or '.join(_LIBRARIES)} are loaded (no code from the folder)")


def identify(path_or_id: str) -> tuple[str, str]:
    """``(pipeline class, "module:Wrapper")`` of a folder or hub id, or a :class:`PretrainedError`
    naming what is supported."""
    index, config = _config_files(str(path_or_id))
    if index is not None:
        data = read_json(index)
        cls = data.get("_class_name")
        if not isinstance(cls, str) or cls not in SUPPORTED:
            raise PretrainedError(f"{path_or_id} holds a diffusers {cls!r}, which is not supported; "
                                  f"supported: {supported_list()}")
        _check_components(data, str(path_or_id))
        return cls, SUPPORTED[cls]
    if config is not None:
        data = read_json(config)
        kind = data.get("model_type")
        if not isinstance(kind, str) or kind not in SUPPORTED or kind.endswith("Pipeline"):
            raise PretrainedError(f"{path_or_id} holds a transformers model of type {kind!r}, which is not "
                                  f"supported; supported: {supported_list()}")
        return kind, SUPPORTED[kind]
    raise PretrainedError(f"{path_or_id} is not a saved pipeline (no model_index.json or config.json); "
                          f"supported: {supported_list()}")


def absent_components(path_or_id: str, pipe_cls: type) -> dict[str, None]:
    """``{name: None}`` for each component ``pipe_cls`` takes that the saved pipeline lacks (e.g.
    SD3 without its T5 encoder): the library's ``from_pretrained`` wants them given as ``None``."""
    import inspect

    index, _ = _config_files(str(path_or_id))
    saved = read_json(index) if index is not None else {}
    params = inspect.signature(pipe_cls.__init__).parameters
    return {name: None for name, p in params.items()
            if name != "self" and p.kind == p.POSITIONAL_OR_KEYWORD
            and saved.get(name, [None, None]) == [None, None]
            and (p.default is inspect.Parameter.empty or p.default is None)}


def weights_kwargs(folder: str) -> dict[str, Any]:
    """``from_pretrained`` arguments that keep loading free of code execution: safetensors when the
    folder has them, never remote code, and no download for a local folder."""
    local = Path(folder).expanduser().is_dir()
    kw: dict[str, Any] = {"use_safetensors": True if not local or any(Path(folder).rglob("*.safetensors"))
                          else None}
    if local or os.environ.get("HF_HUB_OFFLINE"):
        kw["local_files_only"] = True
    return kw
