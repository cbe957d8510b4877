"""eSpeak NG spoken digits: rendering, determinism, labels, the npz cache."""

import numpy as np
import pytest
import torch

from modalities.audio import speech
from modalities.audio.speech import PITCHES, SPEAKERS, WORDS, load_words, pitch_bin, render_words, synthesize


@pytest.fixture(scope="module")
def clips():
    return render_words(6, seed=3)


def test_clips_are_one_second_mono_in_range_with_valid_labels(clips):
    assert clips.audio.shape == (6, 1, 16_000) and clips.audio.dtype == torch.float32
    peaks = clips.audio.abs().amax((1, 2))
    assert bool((peaks >= 0.39).all() and (peaks <= 0.91).all())  # the drawn gain sets the peak
    assert clips.word.max() < len(WORDS) and clips.speaker.max() < len(SPEAKERS) and clips.pitch.max() < 3
    # silence around the word: the first and last 10 ms are never both loud
    assert float(clips.audio[..., :160].abs().max()) < 0.9


def test_a_set_is_a_function_of_seed_and_index(clips):
    again = render_words(3, seed=3)  # another fresh process, a smaller set: a prefix
    assert torch.equal(again.audio, clips.audio[:3]) and torch.equal(again.word, clips.word[:3])
    other = render_words(3, seed=4)
    assert not torch.equal(other.audio, clips.audio[:3])


def test_the_label_is_the_spoken_word_not_a_random_tag():
    # independent oracle: eSpeak's own durations differ by word ("seven" has two syllables)
    one, seven = synthesize("one", "en-us"), synthesize("seven", "en-us")
    assert len(seven) > len(one) * 1.1
    assert speech._draw(0, 5) == speech._draw(0, 5) and speech._draw(0, 5) != speech._draw(1, 5)


@pytest.mark.parametrize(("pitch", "label"), [(20, "low"), (39, "low"), (40, "mid"), (59, "mid"),
                                              (60, "high"), (80, "high")])
def test_pitch_bins(pitch, label):
    assert PITCHES[pitch_bin(pitch)] == label


@pytest.mark.fault("bad condition")
def test_an_unknown_voice_is_a_clear_error():
    with pytest.raises(ValueError, match="no voice 'xx-nowhere'"):
        synthesize("one", "xx-nowhere")


def test_cache_is_written_once_and_read_back(tmp_path, monkeypatch):
    first = load_words(2, seed=7, cache_dir=tmp_path)
    files = list(tmp_path.glob("words-*.npz"))
    assert len(files) == 1 and not list(tmp_path.glob(".*tmp"))

    def no_render(*a, **k):
        raise AssertionError("rendered again instead of reading the cache")

    monkeypatch.setattr(speech, "render_words", no_render)
    second = load_words(2, seed=7, cache_dir=tmp_path)
    assert torch.equal(first.audio, second.audio) and torch.equal(first.speaker, second.speaker)
    files[0].write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="unreadable"):
        load_words(2, seed=7, cache_dir=tmp_path)


def test_cached_audio_is_the_16_bit_rendering(tmp_path):
    clips = load_words(2, seed=3, cache_dir=tmp_path)
    fresh = render_words(2, seed=3)
    assert torch.equal(clips.audio, fresh.audio)
    assert np.allclose(clips.audio.numpy() * 32767, np.round(clips.audio.numpy() * 32767), atol=1e-3)
