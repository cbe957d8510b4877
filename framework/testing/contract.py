"""The checks every modality plugin must pass, as plain functions of a :class:`PluginCase`.

Each ``check_*`` raises :class:`ContractError` naming the plugin and what is wrong, and returns
nothing useful otherwise. :class:`Contract` runs them on one case, building the shared pieces (a
data batch, the tiny trained model) once; :func:`check_plugin` runs every check and reports all
failures at once; :class:`framework.testing.ModalityContract` turns them into pytest tests.

What is checked (``docs/plugins.md``, "The contract"):

- ``registry``: ``plugins.get(name)`` returns the plugin; its name, description, representations,
  conditions and encoder names have the documented types; its recipes are absolute ``*.yaml`` paths
  whose ``model.modality`` is the plugin.
- ``sampling_without_lightning``: in a fresh interpreter, getting the plugin, building the model of
  the case (:class:`~framework.model.generative.GenerativeModel`), sampling it and writing the samples
  import no Lightning (only training needs it; ``LazyClasses`` keeps data modules out).
- ``batch``: a training batch is ``{"media": [B, *media_shape], "conditions": {name: value}}`` with
  one value per condition of the case, each of its kind's shape and type (categorical ``[B]``
  integer label ids in range, scalar ``[B]`` float, vector ``[B, dim]``, sequence ``[B, L, dim]``),
  and an optional ``present`` ``{name: bool [B]}``.
- ``codec``: ``encode`` gives ``[B, *codec.shape]`` (finite floats for a continuous codec, ids in
  ``0..vocab_size − 1`` for a token one), deterministically, also from a codec rebuilt from the same
  arguments (checkpoints rebuild it so); ``decode`` gives back the batch's media shape; with
  ``roundtrip_atol``, ``decode(encode(media))`` is the media.
- ``encoders``: every registered encoder name is a valid ``"<modality>/<name>"`` and callable, and
  every condition of the case that names an encoder resolves to a registered one.
- ``train_and_sample``: a tiny model of the case trains one optimizer step on the batch (finite
  loss, weights change), samples media of the batch's media shape, and, saved and reloaded without
  Lightning, samples exactly the same.
- ``writer``: ``write(media, out, rows=..., title=...)`` returns existing files under ``out``,
  not ``samples.pt``, leaving no temporary files; a writer taking ``conditions=`` also accepts them.
- ``judge``: ``judge(specs, codec, cache_dir).evaluate(media, requested)`` returns finite floats by
  name for real media and their own conditions (every condition the judge scores), an
  ``acc_<condition>`` metric is no lower for the real labels than for wrong ones, and the judge's
  ``request`` hook draws values each scored scalar/vector/sequence condition takes.
"""

from __future__ import annotations

import inspect
import math
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from framework.core import plugins
from framework.core.conditions import Conditions, ConditionSpec
from framework.testing.case import PluginCase
from framework.testing.errors import ContractError
from framework.testing.errors import require as _require

__all__ = ["CHECKS", "Contract", "ContractError", "check_plugin"]

TINY_BACKBONE = {"dim": 32, "depth": 1, "heads": 2}




class Contract:
    """The contract checks of one :class:`PluginCase`, sharing a data batch and a trained tiny model.

    Args:
        case: the plugin configuration to check.
        workdir: a scratch folder (checkpoints, written samples); ``None``: a temporary one.
    """

    def __init__(self, case: PluginCase, workdir: str | Path | None = None) -> None:
        self.case = case
        self._tmp = None if workdir is not None else tempfile.TemporaryDirectory(prefix="polyguide-contract-")
        self.workdir = Path(workdir if workdir is not None else self._tmp.name)
        self._cache: dict[str, Any] = {}

    # ------------------------------------------------------------------ shared pieces
    def _once(self, key: str, build: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    @property
    def where(self) -> str:
        return f"plugin {self.case.modality!r}"

    @property
    def modality(self) -> plugins.Modality:
        return self._once("modality", lambda: plugins.get(self.case.modality))

    @property
    def specs(self) -> dict[str, ConditionSpec]:
        return self._once("specs", lambda: {c["name"]: ConditionSpec(**c) for c in self.case.conditions})

    @property
    def codec(self) -> plugins.Codec:
        return self._once("codec", lambda: self.modality.codec(self.case.representation["name"],
                                                               **self.case.codec_args))

    @property
    def batch(self) -> dict[str, Any]:
        """One training batch of the case's data module (on the CPU)."""
        def draw() -> dict[str, Any]:
            dm = self.case.data()
            if hasattr(dm, "setup"):
                dm.setup("fit")
            batch = next(iter(dm.train_dataloader()))
            _require(isinstance(batch, Mapping), f"{self.where}: a training batch must be a dict, got "
                                                 f"{type(batch).__name__}")
            return batch
        return self._once("batch", draw)

    @property
    def family(self) -> str:
        return self.case.family or ("flow" if self.codec.vocab_size is None else "masked")

    def hparams(self) -> dict[str, Any]:
        """The tiny model's arguments: the case's configuration with a one-block backbone."""
        return dict(family=self.family, family_args=dict(self.case.family_args), modality=self.case.modality,
                    representation=dict(self.case.representation),
                    conditions=[dict(c) for c in self.case.conditions], backbone=dict(TINY_BACKBONE),
                    warmup_steps=1, lr=1e-2)

    def raw_conditions(self, n: int) -> dict[str, Any]:
        """What the sampling checks request: the case's ``sample_conditions`` or the batch's first ``n``."""
        if self.case.sample_conditions is not None:
            return dict(self.case.sample_conditions)
        return {k: v[:n] for k, v in self.batch["conditions"].items() if k in self.specs}

    def _same_media_shape(self, got: Any, want: Any) -> bool:
        got, want = tuple(got), tuple(want)
        if self.case.ragged_media:
            return len(got) == len(want) and got[:-1] == want[:-1]
        return got == want

    # ------------------------------------------------------------------ the checks
    def check_registry(self) -> None:
        """The entry point loads the plugin, and its declared attributes have the documented types."""
        m, name = self.modality, self.case.modality
        _require(isinstance(m, plugins.Modality) and m.name == name,
                 f"{self.where}: plugins.get returned {m!r}, not a Modality named {name!r}")
        _require(name in plugins.available(), f"{self.where}: not listed by plugins.available()")
        _require(isinstance(m.description, str) and m.description.strip() != "",
                 f"{self.where}: description must be a non-empty line")
        _require(len(m.representations) > 0 and all(callable(f) for f in m.representations.values()),
                 f"{self.where}: representations must map names to codec factories")
        _require(self.case.representation["name"] in m.representations,
                 f"{self.where}: no representation {self.case.representation['name']!r}; "
                 f"it has {sorted(m.representations)}")
        for cname, desc in m.conditions.items():
            _require(isinstance(cname, str) and isinstance(desc, str),
                     f"{self.where}: conditions must map names to descriptions (str), "
                     f"got {cname!r}: {desc!r}")
        for rname in m.datamodules:  # names only: listing must not import (LazyClasses)
            _require(isinstance(rname, str), f"{self.where}: data module names must be str, got {rname!r}")
        self._check_recipes()

    def _check_recipes(self) -> None:
        import yaml

        for path in self.modality.recipes():
            _require(path.is_absolute() and path.is_file() and path.suffix == ".yaml",
                     f"{self.where}: recipe {path} is not an absolute path to a .yaml file")
            config = yaml.safe_load(path.read_text()) or {}
            model = config.get("model") or {}
            if "modality" in model:  # recipes may also train a codec or a judge
                _require(model["modality"] == self.case.modality,
                         f"{self.where}: recipe {path.name} names model.modality {model['modality']!r}")

    def check_batch(self) -> None:
        """A training batch has media and one value of the documented shape per condition."""
        batch, where = self.batch, f"{self.where}, training batch"
        _require("media" in batch and isinstance(batch["media"], torch.Tensor),
                 f"{where}: needs 'media', a tensor [B, *media_shape]; it has {sorted(batch)}")
        B = batch["media"].shape[0]
        values = batch.get("conditions", {})
        for name, spec in self.specs.items():
            _require(name in values, f"{where}: lacks condition {name!r}; it has {sorted(values)}")
            v = values[name]
            _require(isinstance(v, torch.Tensor), f"{where}: condition {name!r} must be a tensor, "
                                                  f"got {type(v).__name__}")
            want = _expected_shape(spec, B)
            got = tuple(v.shape)
            ok = len(got) == len(want) and all(w is None or w == g for w, g in zip(want, got, strict=True))
            _require(ok, f"{where}: {spec.kind} condition {name!r} must be {_shape_text(spec)} with B={B}, "
                         f"got {got}")
            if spec.kind == "categorical":
                _require(not v.is_floating_point() and v.dtype != torch.bool,
                         f"{where}: categorical condition {name!r} must hold integer label ids, "
                         f"got {v.dtype}")
                _require(bool(((v >= 0) & (v < len(spec.labels))).all()),
                         f"{where}: condition {name!r} has label ids outside 0..{len(spec.labels) - 1}")
            else:
                _require(v.is_floating_point() and bool(torch.isfinite(v).all()),
                         f"{where}: {spec.kind} condition {name!r} must hold finite floats ({v.dtype})")
        for name, mask in batch.get("present", {}).items():
            ok = isinstance(mask, torch.Tensor) and mask.dtype == torch.bool and tuple(mask.shape) == (B,)
            _require(ok,
                     f"{where}: present[{name!r}] must be a bool tensor [{B}]")

    def check_codec(self) -> None:
        """Encode/decode shapes, types and determinism; the codec rebuilt from its arguments agrees."""
        codec, media = self.codec, self.batch["media"]
        where = f"{self.where}, codec {self.case.representation}"
        _require(isinstance(codec, plugins.Codec), f"{where}: the factory returned {type(codec).__name__}, "
                                                   f"not a framework.core.plugins.Codec")
        shape = codec.shape
        _require(isinstance(shape, tuple) and all(isinstance(s, int) and s > 0 for s in shape),
                 f"{where}: shape must be a tuple of positive ints, got {shape!r}")
        _require(codec.vocab_size is None or (isinstance(codec.vocab_size, int) and codec.vocab_size > 1),
                 f"{where}: vocab_size must be None or an int > 1, got {codec.vocab_size!r}")
        _require(_plain(self.case.codec_args), f"{where}: codec arguments must be plain values (checkpoints "
                                               f"store them), got {self.case.codec_args!r}")
        x = codec.encode(media)
        _require(tuple(x.shape) == (media.shape[0], *shape),
                 f"{where}: encode gave {tuple(x.shape)}, expected {(media.shape[0], *shape)}")
        if codec.vocab_size is None:
            _require(x.is_floating_point() and bool(torch.isfinite(x).all()),
                     f"{where}: a continuous codec must encode to finite floats ({x.dtype})")
        else:
            _require(not x.is_floating_point() and bool(((x >= 0) & (x < codec.vocab_size)).all()),
                     f"{where}: a token codec must encode to integer ids in 0..{codec.vocab_size - 1}")
        again = self.modality.codec(self.case.representation["name"], **self.case.codec_args).encode(media)
        _require(torch.equal(x, again), f"{where}: encoding differs between two codecs built from the same "
                                        f"arguments (a checkpoint could not rebuild it)")
        back = codec.decode(x)
        _require(self._same_media_shape(back.shape, media.shape),
                 f"{where}: decode gave {tuple(back.shape)}, the media are {tuple(media.shape)}")
        if self.case.roundtrip_atol is not None:
            err = float((back.float() - media.float()).abs().max())
            _require(err <= self.case.roundtrip_atol,
                     f"{where}: decode(encode(media)) is {err:.3g} from the media "
                     f"(atol {self.case.roundtrip_atol})")

    def check_encoders(self) -> None:
        """Registered encoders have valid names and are callable; the case's encoders resolve."""
        from framework.core.encoders import EncoderError, check_name, resolve

        for local, fn in self.modality.encoders.items():
            try:
                check_name(f"{self.case.modality}/{local}")
            except EncoderError as e:
                raise ContractError(f"{self.where}: encoder name {local!r}: {e}") from None
            _require(callable(fn), f"{self.where}: encoder {local!r} is not callable")
        for spec in self.specs.values():
            if spec.encoder is not None:
                try:
                    resolve(spec.encoder)
                except (EncoderError, plugins.PluginError) as e:
                    raise ContractError(f"{self.where}: condition {spec.name!r}: {e}") from None

    def _trained(self) -> tuple[Any, Path]:
        """The tiny model after one optimizer step on the batch, and its saved checkpoint."""
        def train() -> tuple[Any, Path]:
            import lightning as L
            from torch.utils.data import DataLoader

            from framework.training.module import GenerativeModule

            torch.manual_seed(0)
            model = GenerativeModule(**self.hparams())
            before = [p.detach().clone() for p in model.parameters()]
            trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                                default_root_dir=self.workdir)
            trainer.fit(model, train_dataloaders=DataLoader([self.batch], batch_size=None))
            loss = trainer.callback_metrics.get("train/loss")
            _require(loss is not None and bool(torch.isfinite(loss)),
                     f"{self.where}: one training step gave loss {loss}")
            _require(any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True)),
                     f"{self.where}: one training step changed no weight")
            path = self.workdir / "contract.ckpt"
            trainer.save_checkpoint(path)
            return model.eval(), path
        return self._once("trained", train)

    def check_train_and_sample(self) -> None:
        """One training step; samples of the media's shape; the reloaded checkpoint samples the same."""
        from framework.model.checkpoints import load_model
        from framework.model.generative import GenerativeModel

        model, path = self._trained()
        raw = self.raw_conditions(2)
        out = model.sample(raw, n=2, steps=2, seed=0)
        media = self.batch["media"]
        _require(self._same_media_shape(out.media.shape, (2, *media.shape[1:])),
                 f"{self.where}: sampled media {tuple(out.media.shape)}, "
                 f"the data's are [2, *{tuple(media.shape[1:])}]")
        if out.media.is_floating_point():
            _require(bool(torch.isfinite(out.media).all()), f"{self.where}: sampled media are not finite")
        light = load_model(path, cls=GenerativeModel)
        again = light.sample(raw, n=2, steps=2, seed=0)
        _require(torch.equal(again.samples, out.samples),
                 f"{self.where}: the checkpoint loaded without Lightning samples differently")
        self._cache["sampled"] = (out.media, model.conditions(raw, 2))

    def check_writer(self) -> None:
        """``write`` returns the files it wrote, under ``out``, atomically, never ``samples.pt``."""
        from framework.core.atomic import stale_temporaries

        media = self._cache.get("sampled", (self.batch["media"][:2], None))[0]
        conditions = self._cache.get("sampled", (None, None))[1]
        out = self.workdir / "written"
        files = self.modality.write(media.cpu(), out, rows=["contract"], title="contract check")
        self._check_files(files, out)
        if "conditions" in inspect.signature(self.modality.write).parameters:
            if conditions is None:
                conditions = Conditions.from_raw(self.specs, self.raw_conditions(2), 2)
            out2 = self.workdir / "written_with_conditions"
            self._check_files(self.modality.write(media.cpu(), out2, title="contract check",
                                                  conditions=conditions), out2)
        _require(not any(p.name.endswith(".tmp") for p in out.rglob("*")) and not stale_temporaries(out),
                 f"{self.where}: write left temporary files in {out}")

    def _check_files(self, files: Any, out: Path) -> None:
        _require(isinstance(files, list) and files and all(isinstance(f, Path) for f in files),
                 f"{self.where}: write must return the list of Paths it wrote, got {files!r}")
        for f in files:
            _require(f.is_file(), f"{self.where}: write returned {f}, which does not exist")
            _require(f.resolve().is_relative_to(out.resolve()),
                     f"{self.where}: write wrote {f} outside {out}")
            _require(f.name != "samples.pt", f"{self.where}: write must not use samples.pt (polyguide "
                                             f"sample keeps the representation there)")

    def check_judge(self) -> None:
        """The judge scores real media by their own conditions with finite metrics (an ``acc_<name>``
        no worse than for wrong labels); its ``request`` hook draws values each scored scalar,
        vector or sequence condition accepts (:mod:`framework.evaluation.judge`)."""
        if not self.case.judge:
            return
        from framework.evaluation import random_requests, scored_conditions

        cache = Path(self.case.cache_dir) if self.case.cache_dir else plugins.judge_cache(self.modality)
        judge = self.modality.judge(self.specs, self.codec, cache)
        _require(callable(getattr(judge, "evaluate", None)),
                 f"{self.where}: judge(...) returned {type(judge).__name__}, which has no evaluate()")
        scored, _ = scored_conditions(self.specs, judge)
        others = [n for n in scored if self.specs[n].kind != "categorical"]
        drawn = random_requests(self.specs, others, 4, 0, judge)  # a ConditionError if a hook answers None
        for name, values in drawn.items():
            try:
                self.specs[name].encode(values, 4)
            except ValueError as e:
                raise ContractError(f"{self.where}: judge.request({name!r}, 4) drew values the condition "
                                    f"does not take: {e}") from None
        media, values = self.batch["media"], self.batch["conditions"]
        requested = {n: values[n] for n in scored}
        scores = judge.evaluate(media, requested)
        _require(isinstance(scores, Mapping) and all(isinstance(k, str) for k in scores),
                 f"{self.where}: evaluate must return {{metric name: float}}, got {scores!r}")
        for k, v in scores.items():
            _require(isinstance(v, (int, float)) and math.isfinite(v),
                     f"{self.where}: evaluate gave {k} = {v!r}, not a finite number")
        cats = [n for n in scored if self.specs[n].kind == "categorical"]
        wrong = judge.evaluate(media, {n: (values[n] + 1) % len(self.specs[n].labels) for n in cats})
        for n in cats:
            key = f"acc_{n}"
            if key in scores and key in wrong:
                _require(scores[key] >= wrong[key],
                         f"{self.where}: the judge scores real media {key} = {scores[key]:.3f} by their own "
                         f"labels but {wrong[key]:.3f} by wrong ones")

    def check_sampling_without_lightning(self) -> None:
        """A fresh interpreter gets the plugin, builds and samples the model and writes: no Lightning."""
        from framework.testing.isolation import sampling_without_lightning

        sampling_without_lightning([self])


#: The checks, in the order :func:`check_plugin` runs them.
CHECKS: tuple[str, ...] = ("registry", "batch", "codec", "encoders", "train_and_sample", "writer", "judge",
                           "sampling_without_lightning")


def check_plugin(case: PluginCase, workdir: str | Path | None = None,
                 skip: tuple[str, ...] = ()) -> None:
    """Run every contract check (:data:`CHECKS`, less ``skip``) on ``case``; raise one
    :class:`ContractError` listing every failure, if any."""
    contract = Contract(case, workdir)
    failures = []
    for name in CHECKS:
        if name in skip:
            continue
        try:
            getattr(contract, f"check_{name}")()
        except ContractError as e:
            failures.append(f"[{name}] {e}")
    if failures:
        raise ContractError(f"{len(failures)} contract check(s) failed:\n" + "\n".join(failures))


def _plain(value: Any) -> bool:
    """Whether ``value`` is made of plain values only (numbers, strings, bools, None, lists, dicts)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _expected_shape(spec: ConditionSpec, batch: int) -> tuple[int | None, ...]:
    return {"categorical": (batch,), "scalar": (batch,), "vector": (batch, spec.dim),
            "sequence": (batch, None, spec.dim)}[spec.kind]


def _shape_text(spec: ConditionSpec) -> str:
    return {"categorical": "[B] label ids", "scalar": "[B] floats", "vector": f"[B, {spec.dim}]",
            "sequence": f"[B, L, {spec.dim}]"}[spec.kind]
