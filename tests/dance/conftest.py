"""Shared pieces of the dance tests: melodies without the corpus, a few rendered dance clips."""

import numpy as np
import pytest

from modalities.audio.music import STYLES, Melodies


def scale_melodies(per_style: int = 3) -> Melodies:
    """Melodies of 24 notes: style ``s`` climbs from MIDI 60 + s, a quarter then two eighths, so
    the onsets are not all on the beat (the score's beat grid must still be found)."""
    notes, starts, styles = [], [0], []
    for s in range(len(STYLES)):
        for m in range(per_style):
            rows, q = [], 0.0
            for i in range(24):
                dur = 1.0 if i % 3 == 0 else 0.5
                rows.append((q, dur, 60 + s + (i + m) % 12))
                q += dur
            notes.append(np.array(rows, dtype=np.float32))
            starts.append(starts[-1] + len(rows))
            styles.append(s)
    return Melodies(np.concatenate(notes), np.array(starts), np.array(styles),
                    np.array([f"scale{i}" for i in range(len(styles))]))


@pytest.fixture(scope="session")
def dances():
    """Eight validation dance clips rendered from :func:`scale_melodies` (seed 3)."""
    from modalities.motion.dance.data import generate_dances

    return generate_dances(8, 3, val=True, melodies=scale_melodies())
