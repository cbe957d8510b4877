"""The text representation: UTF-8 bytes (the media) ↔ BPE token ids (what token families model).

Why media are bytes and not token ids: media are what a modality's data modules serve and what
its writer and judge consume, and the framework hands those only the media — ``Modality.write``
and ``judge.evaluate`` never see the codec. Text media as UTF-8 bytes ``[B, M]`` (``uint8``,
NUL-padded; NUL never occurs in the plays) can be written and judged without knowing the
tokenizer, exactly as images are pixels whatever their patch or palette codec. The codec is then
a fixed tokenizer, like the image :class:`~modalities.image.codecs.Palette`: ``encode`` tokenizes
(about a millisecond for a batch of 64 windows), ``decode`` detokenizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from framework.core.plugins import Codec

from .tokenizer import EOS, PAD, load_tokenizer, resolve_tokenizer

__all__ = ["BPETokens", "media_to_texts", "texts_to_media"]


def texts_to_media(texts: Sequence[str], width: int | None = None) -> torch.Tensor:
    """Strings → UTF-8 bytes ``[B, M]`` (``uint8``, NUL-padded; ``M`` = the longest unless ``width``)."""
    raw = [t.encode("utf-8") for t in texts]
    if any(b"\0" in b for b in raw):
        raise ValueError("text media are NUL-padded; a text may not contain NUL")
    longest = max((len(b) for b in raw), default=0)
    width = longest if width is None else width
    if longest > width:
        raise ValueError(f"a text of {longest} bytes does not fit media of width {width}")
    out = torch.zeros(len(raw), width, dtype=torch.uint8)
    for i, b in enumerate(raw):
        if b:
            out[i, :len(b)] = torch.frombuffer(bytearray(b), dtype=torch.uint8)
    return out


def media_to_texts(media: torch.Tensor | Sequence[str]) -> list[str]:
    """UTF-8 bytes ``[B, M]`` → strings (up to the first NUL; invalid bytes become U+FFFD).

    A list of strings passes through, so writers and judges take either form.
    """
    if not isinstance(media, torch.Tensor):
        return [str(t) for t in media]
    if media.ndim != 2 or media.dtype != torch.uint8:
        raise ValueError(f"text media are UTF-8 bytes [B, M] uint8, got {tuple(media.shape)} {media.dtype}")
    return [bytes(row).split(b"\0", 1)[0].decode("utf-8", errors="replace")
            for row in media.cpu().numpy()]


class BPETokens(Codec):
    """Text bytes ``[B, M]`` ↔ token ids ``[B, L]`` from a byte-level BPE (:mod:`.tokenizer`).

    A text becomes its tokens, then ``<|endoftext|>``, then ``<|pad|>`` up to ``L``; a text of
    ``L`` tokens or more is cut to ``L − 1`` tokens before the end token. Decoding keeps the
    tokens before the first special token, so whatever a sampler emits after the end is dropped
    (the autoregressive family's ``eos_id`` can be set to :attr:`eos_id`).

    Args:
        tokenizer: ``"shakespeare-<vocab>"`` (trained on first use, cached) or a JSON file path.
        length: tokens per sample ``L``.
        cache_dir: where named tokenizers are cached (default ``~/.cache/polyguide/text``).
    """

    def __init__(self, tokenizer: str = "shakespeare-2048", length: int = 64,
                 cache_dir: str | None = None) -> None:
        if length < 2:
            raise ValueError(f"length must be ≥ 2 (text + end token), got {length}")
        self.path: Path = resolve_tokenizer(tokenizer, cache_dir)
        self.tokenizer = load_tokenizer(self.path)
        self.length = int(length)
        self.vocab_size = self.tokenizer.get_vocab_size()
        self.pad_id, self.eos_id = self.tokenizer.token_to_id(PAD), self.tokenizer.token_to_id(EOS)
        self.n_special = 2  # ids below this are special (load_tokenizer checks they are 0 and 1)

    @property
    def shape(self) -> tuple[int]:
        return (self.length,)

    def encode_texts(self, texts: Sequence[str], eos: bool = True) -> torch.Tensor:
        """Strings → ids ``[B, L]`` (``eos=False``: no end token, so a text may fill all ``L``)."""
        out = torch.full((len(texts), self.length), self.pad_id, dtype=torch.long)
        keep = self.length - 1 if eos else self.length
        for i, enc in enumerate(self.tokenizer.encode_batch(list(texts), add_special_tokens=False)):
            ids = enc.ids[:keep] + ([self.eos_id] if eos else [])
            out[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def decode_text(self, ids: torch.Tensor) -> list[str]:
        """Ids ``[B, L]`` → strings, each cut at its first special (end or pad) token."""
        if ids.ndim != 2:
            raise ValueError(f"expected token ids [B, L], got {tuple(ids.shape)}")
        rows = ids.long().cpu()
        if bool(((rows < 0) | (rows >= self.vocab_size)).any()):
            raise ValueError(f"token ids must be in 0..{self.vocab_size - 1}")
        cut = []
        for row in rows.tolist():
            end = next((j for j, t in enumerate(row) if t < self.n_special), len(row))
            cut.append(row[:end])
        return self.tokenizer.decode_batch(cut)

    def prompt(self, text: str, n: int = 1) -> torch.Tensor:
        """A prefix for autoregressive sampling: ``text``'s ids repeated ``[n, P]`` (no end token;
        pass as ``init=``; the model then samples at most ``L − P`` more tokens)."""
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        if not ids or len(ids) >= self.length:
            raise ValueError(f"a prompt needs 1..{self.length - 1} tokens, got {len(ids)}")
        return torch.tensor(ids, dtype=torch.long).expand(n, -1).clone()

    def word_continuations(self, prompt: str) -> torch.Tensor:
        """``[V]`` bool: the tokens that would glue onto a ``prompt`` ending in a letter or digit
        (those starting with one, without the byte-level BPE's leading space), so that the text
        after a prompt such as ``"Enter"`` starts a new word rather than ``"Enterlse"``. All
        ``False`` when the prompt ends otherwise (a space, punctuation, a line break)."""
        if not prompt or not prompt[-1].isalnum():
            return torch.zeros(self.vocab_size, dtype=torch.bool)
        if getattr(self, "_continuations", None) is None:
            pieces = [self.tokenizer.decode([i], skip_special_tokens=False) for i in range(self.vocab_size)]
            glue = [i >= self.n_special and bool(p) and p[0].isalnum() for i, p in enumerate(pieces)]
            self._continuations = torch.tensor(glue, dtype=torch.bool)
        return self._continuations.clone()

    def decode_continuations(self, prompts: Sequence[torch.Tensor | Sequence[int]],
                             x: torch.Tensor) -> torch.Tensor:
        """Each prompt's ids followed by its sampled ids ``x`` ``[B, L]`` → UTF-8 bytes ``[B, M]``,
        decoded together (so spacing across the seam is the tokenizer's, not a guess)."""
        if len(prompts) != x.shape[0]:
            raise ValueError(f"{len(prompts)} prompts for {x.shape[0]} samples")
        rows = [torch.cat([torch.as_tensor(p, dtype=torch.long).cpu(), r.cpu()]) for p, r in zip(prompts, x,
                                                                                                strict=True)]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = r
        texts = self.decode_text(ids)
        return texts_to_media([t.replace("\x00", "\ufffd") for t in texts]).to(x.device)

    def encode(self, media: torch.Tensor) -> torch.Tensor:
        """UTF-8 bytes ``[B, M]`` → ids ``[B, L]`` (on the media's device)."""
        return self.encode_texts(media_to_texts(media)).to(media.device)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Ids ``[B, L]`` → UTF-8 bytes ``[B, M]`` (``M``: the longest decoded text).

        Byte-level BPE can emit a NUL byte (an undertrained model may); it becomes U+FFFD, since
        NUL pads the media.
        """
        return texts_to_media([t.replace("\x00", "\ufffd") for t in self.decode_text(x)]).to(x.device)
