"""The text modality's plugin class (to be registered as ``text`` under ``polyguide.modalities``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import torch

from framework.core.atomic import atomic_write
from framework.core.conditions import ConditionSpec
from framework.core.plugins import Codec, LazyClasses, Modality
from framework.core.shipped import recipes_dir

from .codecs import BPETokens, media_to_texts
from .corpus import GENRES
from .metrics import GenreJudge

AR_SCORER = "shakespeare_ar.ckpt"  # the autoregressive model that scores samples' perplexity (ppl_ar)
RECIPES = recipes_dir("text")  # the checkout's recipes/text, or the installed polyguide_recipes.text


class TextModality(Modality):
    """Text as UTF-8 bytes ``[B, M]`` (``uint8``, NUL-padded); see :mod:`.codecs` for why."""

    name = "text"
    description = "text: Shakespeare's speeches (genre/speaker), byte-level BPE tokens"
    representations = MappingProxyType({"bpe": BPETokens})
    datamodules = LazyClasses({"shakespeare": f"{__package__}.data:ShakespeareData"})
    conditions = MappingProxyType({"genre": " | ".join(GENRES),
                                   "speaker": "the most frequent speakers of the training plays "
                                              "(GLOUCESTER, FALSTAFF, HAMLET, …); others null"})
    recipes_dir = RECIPES

    def write(self, media: torch.Tensor | Sequence[str], out: Path, *, rows: Sequence[str] | None = None,
              title: str | None = None) -> list[Path]:
        """``samples.txt``: the title, then one block per sample headed by its number and, with
        ``rows``, its row label (samples are split evenly over the rows, in order); and one plain
        UTF-8 file per passage, ``sample_000.txt`` …, holding just its text."""
        texts = media_to_texts(media)
        if rows and len(texts) % len(rows):
            raise ValueError(f"{len(texts)} samples do not fill {len(rows)} rows evenly")
        per_row = len(texts) // len(rows) if rows else len(texts)
        blocks = [f"# {title}\n"] if title else []
        for i, text in enumerate(texts):
            label = f"{rows[i // per_row]} · " if rows else ""
            blocks.append(f"=== {label}sample {i + 1} ===\n{text}\n")
        out.mkdir(parents=True, exist_ok=True)
        path = out / "samples.txt"
        atomic_write(path, lambda tmp: tmp.write_text("\n".join(blocks), encoding="utf-8"))
        files = [path]
        for i, text in enumerate(texts):
            files.append(atomic_write(out / f"sample_{i:03d}.txt",
                                      lambda tmp, text=text: tmp.write_text(text + "\n", encoding="utf-8")))
        return files

    def judge(self, specs: Mapping[str, ConditionSpec], codec: Codec, cache_dir: Path) -> GenreJudge:
        """The genre judge (tokenizer-independent, so one per cache), cached as plain arrays in
        ``cache_dir/genre-judge.npz`` (no pickle: a cache runs no code). Its ``ppl_ar`` scorer is
        ``cache_dir/shakespeare_ar.ckpt``, else the shipped autoregressive model (if present)."""
        scorer = next((p for p in (Path(cache_dir) / AR_SCORER, RECIPES / "checkpoints" / AR_SCORER)
                       if p.is_file()), None)
        return GenreJudge(Path(cache_dir) / "genre-judge.npz", scorer=scorer)
