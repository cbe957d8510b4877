"""The Shakespeare data module: windows of speeches with ``genre`` and ``speaker`` conditions.

Batches are ``{"media": [B, M] uint8 (UTF-8 bytes, NUL-padded), "conditions": {"genre": [B],
"speaker": [B]}, "present": {"speaker": [B] bool}}``; the model's :class:`~.codecs.BPETokens`
codec turns media into ids ``[B, L]``. A speaker outside the label set has ``present`` False,
so the conditioner gives it the speaker null — the same null guidance uses for "no speaker".

Prompting needs no condition: an autoregressive model continues a prefix, so a prompt is the
preceding context given as prefix tokens at sampling time (``model.sample(..., init=
codec.prompt("To be, or not to be", n))``; the sample holds only the continuation, at most
``L − P`` tokens for a prompt of ``P``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch.utils.data import Dataset

from framework.core.conditions import ConditionSpec
from framework.training.data import SplitData

from .codecs import texts_to_media
from .corpus import GENRES, Speech, chunk_lines, load_speeches, split_by_play, top_speakers
from .tokenizer import check_tokenizer, load_tokenizer, resolve_tokenizer

__all__ = ["ShakespeareData", "TextWindows", "shakespeare_specs"]


def shakespeare_specs(speakers: tuple[str, ...]) -> dict[str, ConditionSpec]:
    """``genre`` (comedy | history | tragedy) and ``speaker`` (the given top speakers)."""
    return {"genre": ConditionSpec("genre", labels=GENRES),
            "speaker": ConditionSpec("speaker", labels=speakers)}


class TextWindows(Dataset):
    """Windows as media ``[N, M]`` bytes with condition values ``[N]`` and presence masks ``[N]``;
    ``texts``, ``plays`` and ``n_tokens`` (text tokens, end token excluded) per window for
    inspection and statistics."""

    def __init__(self, texts: list[str], plays: list[str], conditions: dict[str, torch.Tensor],
                 present: dict[str, torch.Tensor], n_tokens: torch.Tensor) -> None:
        self.texts, self.plays, self.n_tokens = texts, plays, n_tokens
        self.media = texts_to_media(texts)
        self.conditions, self.present = conditions, present

    def __len__(self) -> int:
        return self.media.shape[0]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"media": self.media[i], "conditions": {k: v[i] for k, v in self.conditions.items()},
                "present": {k: v[i] for k, v in self.present.items()}}


class ShakespeareData(SplitData):
    """Speeches of the comedies, histories and tragedies (:mod:`.corpus`), cut at line breaks into
    windows of at most ``length − 1`` tokens (the codec adds the end token), split by play.

    Conditions: ``genre`` (3 labels) and ``speaker`` (the ``speakers`` most frequent speakers of
    the training plays; anyone else is absent, i.e. null). Validation is whole held-out plays
    (*Twelfth Night*, *Henry V*, *Macbeth*), whose characters are not in the speaker labels: their
    speaker is null (but for a handful of windows of Henry V's GLOUCESTER, a name shared with a
    labelled character).

    Args:
        length: the codec's sample length ``L`` (tokens, end and padding included).
        tokenizer: ``"shakespeare-<vocab>"`` (trained on first use, cached) or a JSON file; the
            model's codec must use the same.
        cache_dir: where named tokenizers are cached (default ``~/.cache/polyguide/text``).
        speakers: how many speakers get a label.
        min_tokens: windows with fewer text tokens are dropped (one-word interjections such as
            "Bernardo?" carry no genre or speaker signal and would be nearly all padding).
        batch_size, seed: training batch size and shuffling seed.
    """

    def __init__(self, length: int = 64, tokenizer: str = "shakespeare-2048", cache_dir: str | None = None,
                 speakers: int = 12, min_tokens: int = 8, batch_size: int = 64, seed: int = 0) -> None:
        super().__init__(batch_size, seed)
        if not 2 <= min_tokens < length:
            raise ValueError(f"min_tokens must be in 2..{length - 1}, got {min_tokens}")
        check_tokenizer(tokenizer)  # before training starts, not at data set-up
        self.length, self.tokenizer_name, self.cache_dir = int(length), tokenizer, cache_dir
        self.min_tokens = int(min_tokens)
        train, self._val_speeches = split_by_play(load_speeches())
        self._train_speeches = train
        self.speakers = top_speakers(train, speakers)
        self.specs = shakespeare_specs(self.speakers)

    def _windows(self, speeches: list[Speech], tok) -> TextWindows:
        lines = sorted({line for s in speeches for line in s.text.split("\n")})
        counts = dict(zip(lines, (len(e.ids) for e in tok.encode_batch(lines, add_special_tokens=False)),
                          strict=True))
        budget = self.length - 1  # room for the end token
        texts, plays, genre, speaker, n_tokens = [], [], [], [], []
        for s in speeches:
            for chunk in chunk_lines(s.text, counts.__getitem__, budget):
                n = sum(counts[line] for line in chunk.split("\n")) + chunk.count("\n")  # \n is one token
                if n < self.min_tokens:
                    continue
                texts.append(chunk)
                plays.append(s.play)
                genre.append(GENRES.index(s.genre))
                speaker.append(self.speakers.index(s.speaker) if s.speaker in self.speakers else -1)
                n_tokens.append(min(n, budget))  # an over-long single line is cut by the codec
        spk = torch.tensor(speaker, dtype=torch.long)
        conditions = {"genre": torch.tensor(genre, dtype=torch.long), "speaker": spk.clamp(min=0)}
        return TextWindows(texts, plays, conditions, {"speaker": spk >= 0},
                           torch.tensor(n_tokens, dtype=torch.long))

    def build(self) -> tuple[TextWindows, TextWindows]:
        tok = load_tokenizer(resolve_tokenizer(self.tokenizer_name, self.cache_dir))
        return self._windows(self._train_speeches, tok), self._windows(self._val_speeches, tok)

    def stats(self) -> dict[str, dict[str, dict[str, int]]]:
        """Per split and genre: plays, windows, text tokens, and windows with a speaker label."""
        self.setup()
        out: dict[str, dict[str, dict[str, int]]] = {}
        for name, ds in (("train", self._train), ("val", self._val)):
            g, labelled = ds.conditions["genre"], ds.present["speaker"]
            plays = Counter(gi for _, gi in set(zip(ds.plays, g.tolist(), strict=True)))
            out[name] = {label: {"plays": plays[i], "windows": int((g == i).sum()),
                                 "tokens": int(ds.n_tokens[g == i].sum()),
                                 "with_speaker": int((labelled & (g == i)).sum())}
                         for i, label in enumerate(GENRES)}
        return out
