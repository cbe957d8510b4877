"""The modality registry: plugins found through the ``polyguide.modalities`` entry-point group.

A modality plugin is a :class:`Modality` subclass registered in its package's ``pyproject.toml``::

    [project.entry-points."polyguide.modalities"]
    spectra = "polyguide_spectra:SpectraModality"

It supplies the representations a generator family works on (each a :class:`Codec` between raw
media and model tensors), its condition vocabulary, its Lightning data modules, a writer for its
media, and where its recipes live. The core never imports a modality: training and sampling
reach one only through :func:`get`. See ``docs/plugins.md``.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

import torch

from framework.core.errors import UserError

__all__ = ["Codec", "LazyClasses", "Modality", "PluginError", "api", "available", "get", "judge_cache",
           "plugin_modules", "refresh"]

GROUP = "polyguide.modalities"


class PluginError(UserError, LookupError):
    """A modality, representation or data module that is not installed or not valid."""


class LazyClasses(Mapping[str, Any]):
    """A read-only name → class (or any module attribute) mapping whose values are given as
    ``"module:attribute"`` and imported on first access, e.g. a modality's ``datamodules``: a data
    module imports Lightning (seconds), which sampling never needs; or its :attr:`Modality.api`."""

    def __init__(self, targets: Mapping[str, str]) -> None:
        self._targets = dict(targets)
        self._loaded: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            module, _, attr = self._targets[name].partition(":")  # KeyError for an unknown name
            self._loaded[name] = getattr(importlib.import_module(module), attr)
        return self._loaded[name]

    def __iter__(self):
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    def __repr__(self) -> str:
        return f"LazyClasses({self._targets!r})"


class Codec:
    """Maps raw media ``[B, *media_shape]`` to a family's representation ``[B, *shape]`` and back.

    Continuous codecs (``vocab_size is None``) produce float tokens ``[B, L, D]`` for the
    diffusion and flow families; discrete codecs produce token ids ``[B, L]`` in
    ``0..vocab_size − 1`` for the masked and autoregressive families. A codec's constructor
    arguments must be plain values: they are saved in checkpoints to rebuild it.
    """

    #: ``None`` for continuous representations; the token vocabulary otherwise.
    vocab_size: int | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """One encoded sample's shape: ``(L, D)`` continuous or ``(L,)`` discrete."""
        raise NotImplementedError

    def encode(self, media: torch.Tensor) -> torch.Tensor:
        """``[B, *media_shape]`` → ``[B, *shape]``."""
        raise NotImplementedError

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, *shape]`` → ``[B, *media_shape]``."""
        raise NotImplementedError


class Modality:
    """Base class of modality plugins. Subclasses fill in the class attributes and methods.

    Attributes:
        name: the registry name (the entry point's name must match).
        description: one line for ``polyguide modalities``.
        representations: representation name → :class:`Codec` factory (class or callable).
        datamodules: data module name → ``LightningDataModule`` class (a :class:`LazyClasses`
            keeps Lightning out of sampling).
        conditions: condition name → a short description of its values.
        recipes_dir: where this modality's ``*.yaml`` recipes live (``None``: none shipped).
        encoders: condition encoder name → callable turning raw values into a tensor
            (``Sequence[Any] -> [n, dim]`` or ``[n, L, dim]``); a condition spec refers to one as
            ``"<modality>/<name>"`` (see :mod:`framework.core.encoders`).
        costs: cost name → factory ``(codec, condition specs) -> cost`` building a differentiable
            ``cost(x0 [B, *shape], conditions) -> [B]`` on the model's representation, for
            cost-gradient guidance (``presets.cost``). A model of this modality offers these
            costs by name at sampling time, under any the caller supplies; a factory is built
            only when a guidance names it, and may raise :class:`PluginError` when the model's
            conditions do not support it.
        api: the public API this modality shares with other plugins, name → function or constant
            (a :class:`LazyClasses` of ``"module:attribute"``, imported on first use); another
            plugin reaches it by name with :func:`api` (``api("audio/render")``) instead of
            importing this modality's modules, so no modality imports another.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    representations: ClassVar[Mapping[str, Callable[..., Codec]]] = {}
    datamodules: ClassVar[Mapping[str, type]] = {}
    conditions: ClassVar[Mapping[str, str]] = {}
    recipes_dir: ClassVar[Path | None] = None
    encoders: ClassVar[Mapping[str, Callable[[Sequence[Any]], torch.Tensor]]] = {}
    #: ``(codec, condition specs) -> cost``; a cost is ``(x0 [B, *shape], conditions) -> [B]``
    costs: ClassVar[Mapping[str, Callable[[Codec, Mapping[str, Any]], Callable[..., torch.Tensor]]]] = {}
    api: ClassVar[Mapping[str, Any]] = {}

    def codec(self, representation: str, **kwargs: Any) -> Codec:
        """Build the codec of one representation, e.g. ``codec("patches", size=16, patch=2)``."""
        if representation not in self.representations:
            raise PluginError(f"modality {self.name!r} has no representation {representation!r}; "
                              f"it has {sorted(self.representations)}")
        try:
            return self.representations[representation](**kwargs)
        except (TypeError, ValueError) as e:
            raise PluginError(f"modality {self.name!r}, representation {representation!r}: {e}") from e

    def recipes(self) -> list[Path]:
        """The recipe files this modality ships."""
        return sorted(self.recipes_dir.glob("*.yaml")) if self.recipes_dir else []

    def write(self, media: torch.Tensor, out: Path, *, rows: Sequence[str] | None = None,
              title: str | None = None) -> list[Path]:
        """Write a batch of media ``[B, *media_shape]`` under ``out``; returns the files written.

        ``rows`` optionally labels groups of samples (one label per row of a grid) and ``title``
        the whole set. The default saves the raw tensor as ``media.pt`` (``polyguide sample``
        writes the representation beside it as ``samples.pt``); modalities override it with their
        media: a file per sample in the medium people use, and usually a grid of all of them.
        """
        from framework.core.atomic import atomic_save

        return [atomic_save(out / "media.pt", lambda f: torch.save(media.cpu(), f))]

    def demo(self, out: Path, **options: Any) -> dict[str, Any]:
        """``polyguide demo``: run this modality's demonstration, writing under ``out``; returns
        ``{"table": markdown, "files": [paths written]}``. ``options``: ``per_request``, ``steps``,
        ``seed``, ``progress``, ``device``."""
        raise PluginError(f"modality {self.name!r} ships no demo")

    def judge(self, specs: Mapping[str, Any], codec: Codec, cache_dir: Path) -> Any:
        """An object whose ``evaluate(media, requested) -> {metric: value}`` scores samples, where
        ``requested`` maps condition names to ``[B]`` label ids, or to the values its optional
        ``request(name, n, generator)`` hook drew for a scalar, vector or sequence condition (used by
        ``polyguide eval`` and validation; see :class:`framework.evaluation.judge.Judge`).
        ``cache_dir`` is where trained judges (classifiers) may be cached."""
        raise PluginError(f"modality {self.name!r} provides no metrics")


@functools.cache
def _installed() -> tuple[Any, ...]:
    """The entry points of :data:`GROUP`, read once per process (:func:`refresh` reads them again)."""
    importlib.invalidate_caches()
    return tuple(entry_points(group=GROUP))


def _entry_points() -> dict[str, Any]:
    """Name → entry point of the installed modality plugins; two plugins claiming a name is an error."""
    found: dict[str, Any] = {}
    for ep in _installed():
        if ep.name in found and found[ep.name].value != ep.value:
            raise PluginError(f"two installed plugins register the modality {ep.name!r}: "
                              f"{found[ep.name].value} and {ep.value}; uninstall one")
        found[ep.name] = ep
    return found


def refresh() -> None:
    """Read the installed plugins again on the next lookup: for a plugin installed or removed while
    this process runs (the registry is otherwise read once per process)."""
    _installed.cache_clear()


def plugin_modules() -> list[str]:
    """The modules the installed plugins' entry points name (e.g. ``modalities.image``)."""
    return [ep.value.split(":", 1)[0].strip() for ep in _installed()]


def available() -> list[str]:
    """Names of the installed modality plugins."""
    return sorted(_entry_points())


def get(name: str) -> Modality:
    """The installed modality ``name`` (instantiated); a clear error lists the installed ones."""
    eps = _entry_points()
    if name not in eps:
        raise PluginError(f"no modality {name!r} is installed; installed: {available() or 'none'} "
                          f"(plugins register under the entry-point group {GROUP!r})")
    try:
        cls = eps[name].load()
    except Exception as e:  # a broken plugin must not look like a missing one
        raise PluginError(f"modality {name!r} ({eps[name].value}) failed to load: {e}") from e
    if not (isinstance(cls, type) and issubclass(cls, Modality)):
        raise PluginError(f"modality {name!r} ({eps[name].value}) is not a framework.core.plugins.Modality "
                          f"subclass")
    if cls.name != name:
        raise PluginError(f"entry point {name!r} loads a modality named {cls.name!r}; they must match")
    return cls()


def api(name: str) -> Any:
    """The object a modality plugin shares under ``"<modality>/<name>"`` in its :attr:`Modality.api`
    (e.g. ``api("audio/render")``, the audio plugin's instrument renderer); a clear error names the
    modality's shared names."""
    modality, _, local = name.partition("/")
    if not modality or not local:
        raise PluginError(f"shared name {name!r} is not of the form '<modality>/<name>'")
    shared = get(modality).api
    if local not in shared:
        raise PluginError(f"modality {modality!r} shares no {local!r}; "
                          f"it shares {sorted(shared) or 'nothing'}")
    return shared[local]


def judge_cache(modality: Modality) -> Path:
    """Where ``modality``'s judges are cached, for validation and ``polyguide eval`` alike: the
    folder of its shipped checkpoints (``recipes_dir/checkpoints``, whose trained judges the shipped
    results use) if there is one, else ``$POLYGUIDE_CACHE/judges/<name>`` (default
    ``~/.cache/polyguide/judges/<name>``), never beside a user's checkpoint."""
    import os

    shipped = Path(modality.recipes_dir) / "checkpoints" if modality.recipes_dir else None
    if shipped is not None and shipped.is_dir():
        return shipped
    root = Path(os.environ.get("POLYGUIDE_CACHE", Path.home() / ".cache" / "polyguide"))
    return root / "judges" / modality.name
