"""First-use data preparation shows progress on a terminal (speech clips are rendered for minutes, the
music corpus parsed for about one) and nothing once cached, or in logs that are not a terminal.

The slow work itself (eSpeak NG in fresh processes, music21 parsing) is replaced by stand-ins of the
same shapes: what is checked is the bar — its text, its total and that it reaches it."""

from __future__ import annotations

import io
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from modalities.audio import music, speech


class Terminal(io.StringIO):
    """Standard error as a terminal (tqdm shows its bar only there: ``disable=None``)."""

    def isatty(self) -> bool:
        return True


def _rendered(seed: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`speech._render_fresh`'s result for clips ``start:stop``: 16-bit audio and labels."""
    return np.zeros((stop - start, 16), np.int16), np.zeros((stop - start, 3), np.int64)


@pytest.mark.parametrize("terminal", [True, False])
def test_rendering_speech_shows_a_bar_on_a_terminal(monkeypatch, terminal):
    monkeypatch.setattr(speech, "_render_fresh", _rendered)
    err = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    n = 2 * speech.CHUNK + 5  # three chunks, each in its own process
    clips = speech.render_words(n, workers=1)
    assert clips.audio.shape == (n, 1, 16)
    shown = err.getvalue()
    if terminal:
        assert f"rendering {n} word clips (once, then cached)" in shown and "3/3" in shown
    else:
        assert shown == ""  # a log file gets no bar


def test_parsing_the_music_corpus_shows_a_bar_the_first_time_only(monkeypatch, tmp_path):
    score = SimpleNamespace(parts=[object(), object(), object()])
    files = [tmp_path / f"file-{i}" for i in range(3)]
    monkeypatch.setattr(music, "_corpus_files", lambda folder, names: files)
    monkeypatch.setattr(music, "_scores", lambda path, limit: iter([score]))
    monkeypatch.setattr(music, "_notes_of", lambda part: np.ones((16, 3), np.float32))
    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    per_style = 2
    first = music.load_melodies(per_style, cache_dir=tmp_path)
    total = per_style * len(music.STYLES)
    assert len(first.style) == total
    assert "parsing melodies (once, then cached)" in err.getvalue() and f"{total}/{total}" in err.getvalue()
    err.truncate(0)
    err.seek(0)
    again = music.load_melodies(per_style, cache_dir=tmp_path)  # from the cache: nothing to show
    assert err.getvalue() == "" and np.array_equal(again.notes, first.notes)
