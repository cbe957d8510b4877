"""WAV, spectrogram-grid and HTML writers; reading audio files back (any rate, any channels)."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from framework.core.conditions import ConditionError
from modalities.audio.features import AudioFileError, read_wav, resample
from modalities.audio.writers import spectrogram_image, write_audio


def sines(n: int, seconds: float = 1.0, sr: int = 16_000) -> torch.Tensor:
    t = torch.arange(int(seconds * sr)) / sr
    return torch.stack([0.4 * torch.sin(2 * math.pi * (200 + 100 * i) * t) for i in range(n)])[:, None]


def test_write_audio_wavs_grid_and_page(tmp_path):
    media = sines(6)
    files = write_audio(media, tmp_path / "out", rows=["low <a>", "high"], title="two & rows")
    names = sorted(f.name for f in files)
    assert names == ["grid.png", "index.html", *[f"sample_{i:03d}.wav" for i in range(6)]]
    for i in range(6):
        data, sr = sf.read(tmp_path / "out" / f"sample_{i:03d}.wav", dtype="float32")
        assert sr == 16_000 and data.shape == (16_000,)
        assert np.abs(data - media[i, 0].numpy()).max() <= 1 / 32_767 + 1e-6  # 16-bit PCM
    grid = Image.open(tmp_path / "out" / "grid.png")
    assert grid.width > grid.height  # 2 rows of 3 wide tiles
    page = (tmp_path / "out" / "index.html").read_text()
    assert page.count("<audio") == 6 and 'src="grid.png"' in page
    assert "low &lt;a&gt;" in page and "two &amp; rows" in page  # labels are escaped
    assert page.index("sample_002.wav") < page.index("high") < page.index("sample_003.wav")


def test_spectrogram_tiles_show_pitch():
    """The picture shows the signal: the 400-Hz tone's bright band sits above the 200-Hz one's."""
    img = spectrogram_image(torch.cat([sines(1), sines(3)[2:]]))  # 200 Hz, 400 Hz
    assert img.shape[:3] == (2, 3, 64) and 0 <= img.min() and img.max() <= 1
    band = img.mean((1, 3)).argmax(-1)  # brightest mel row of each tile (row 0 = highest band)
    assert band[1] < band[0]


@pytest.mark.fault("audio input")
def test_rows_must_divide_the_batch(tmp_path):
    with pytest.raises(ValueError, match="do not fill 4 rows"):
        write_audio(sines(6), tmp_path, rows=["a", "b", "c", "d"])


@pytest.mark.fault("audio input")
def test_read_wav_mixes_down_and_resamples(tmp_path):
    sr = 8_000
    t = np.arange(sr) / sr
    left = 0.5 * np.sin(2 * np.pi * 1000 * t)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, -0.5 * left + 0.2 * np.sin(2 * np.pi * 500 * t)], 1), sr)
    wave = read_wav(path)
    assert wave.shape == (1, 16_000)
    spectrum = np.abs(np.fft.rfft(wave[0].numpy()))
    peaks = sorted(np.argsort(spectrum)[-2:])  # 1 Hz bins over 1 s
    assert peaks == [500, 1000]
    torch.testing.assert_close(resample(wave, 16_000, 16_000), wave)


@pytest.mark.fault("audio input")
def test_unreadable_audio_is_a_condition_error_naming_the_file(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(AudioFileError, match=r"broken\.wav") as e:
        read_wav(bad)
    assert isinstance(e.value, ConditionError)  # the CLI prints it on one line, exit code 2
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16_000)
    with pytest.raises(AudioFileError, match="no samples"):
        read_wav(empty)


LONG_TITLE = "word=seven, speaker=en-us+f1 | independent([word, speaker], [3, 2]) | 20 steps, seed 0"


@pytest.mark.parametrize("layout", ["labelled", "unlabelled"])
def test_grid_labels_neither_overlap_tiles_nor_leave_the_picture(layout):
    """Long row labels, column labels and a long title each get their own space (the old grid
    drew a long row label under the first tile and cut the title at the picture's edges)."""
    import matplotlib.pyplot as plt

    from modalities.audio.writers import spectrogram_figure

    if layout == "labelled":
        rows = ["real (held out)", "generated, independent([word, speaker], [3, 2])"]
        fig = spectrogram_figure(sines(6), rows=rows, cols=["zero", "one", "a rather long column label"],
                                 title=LONG_TITLE)
        n_labels = 2 + 3 + 1
    else:  # what `polyguide sample --n 4` draws: no row labels, a long title over 4 tiles
        fig, n_labels = spectrogram_figure(sines(4), title=LONG_TITLE), 1
    try:
        renderer = fig.canvas.get_renderer()
        page = fig.bbox
        tiles = [ax.get_window_extent(renderer) for ax in fig.axes]
        labels = [ax.yaxis.label for ax in fig.axes if ax.get_ylabel()]
        labels += [ax.title for ax in fig.axes if ax.get_title()] + [fig._suptitle]
        assert len(labels) == n_labels
        boxes = [t.get_window_extent(renderer) for t in labels]
        for box in boxes:
            assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1
            assert not any(box.overlaps(tile) for tile in tiles)
        for i, a in enumerate(boxes):
            assert not any(a.overlaps(b) for b in boxes[i + 1:])
    finally:
        plt.close(fig)


@pytest.mark.fault("audio input")
def test_grid_column_labels_must_match_the_columns(tmp_path):
    with pytest.raises(ValueError, match="2 column labels for 3 columns"):
        write_audio(sines(6), tmp_path / "out", rows=["a", "b"], cols=["x", "y"])
    assert not (tmp_path / "out").exists()  # nothing written


def test_level_policy_scales_loud_clips_to_the_peak_target_and_leaves_quiet_ones():
    from modalities.audio.features import PEAK_TARGET, clipped_fraction, limit_peak

    wave = sines(3)
    wave[0] *= 5.0  # peak 2.0: an over-loud decode
    wave[2, 0, 100] = float("nan")
    out = limit_peak(wave)
    assert float(out[0].abs().max()) == pytest.approx(PEAK_TARGET)
    torch.testing.assert_close(out[0], wave[0] * (PEAK_TARGET / 2.0))  # a gain, not a cut
    torch.testing.assert_close(out[1], wave[1])  # below the target: unchanged
    assert float(out[2, 0, 100]) == 0.0 and bool(out.isfinite().all())
    torch.testing.assert_close(limit_peak(torch.zeros(2, 1, 50)), torch.zeros(2, 1, 50))
    assert clipped_fraction(wave.clamp(-1, 1)).tolist()[0] > 0.3 and clipped_fraction(out).max() == 0


@pytest.mark.parametrize(("seconds", "n", "rows"), [(1.0, 16, None), (1.0, 6, ["real", "generated"]),
                                                     (4.0, 4, ["a long row label for music", "b"])])
def test_grid_tiles_are_at_least_200_px(tmp_path, seconds, n, rows):
    """Readable tiles: every spectrogram is drawn at least 200 px wide and high in grid.png."""
    import matplotlib.pyplot as plt

    from modalities.audio.writers import spectrogram_figure

    fig = spectrogram_figure(sines(n, seconds), rows=rows, title=LONG_TITLE)
    try:
        renderer = fig.canvas.get_renderer()
        boxes = [ax.get_window_extent(renderer) for ax in fig.axes if ax.get_images()]
        assert len(boxes) == n
        assert min(b.width for b in boxes) >= 200 and min(b.height for b in boxes) >= 200
    finally:
        plt.close(fig)
    grid = Image.open(write_audio(sines(n, seconds), tmp_path, rows=rows)[-2])
    assert grid.width >= 200 * (n // len(rows) if rows else min(n, 8))


@pytest.mark.parametrize("samples", [1, 300])
def test_write_audio_short_clips(tmp_path, samples):
    """Clips shorter than one STFT window used to fail in the spectrogram (reflect padding needs
    more samples than half a window); they are written whole and drawn padded with silence."""
    media = 0.3 * torch.randn(2, 1, samples, generator=torch.Generator().manual_seed(0))
    write_audio(media, tmp_path, rows=["a", "b"])
    for i in range(2):
        data, sr = sf.read(tmp_path / f"sample_{i:03d}.wav", dtype="float32")
        assert sr == 16_000 and data.shape == (samples,)
        assert np.abs(data - media[i, 0].clamp(-1, 1).numpy()).max() <= 1 / 32_767 + 1e-6
    assert Image.open(tmp_path / "grid.png").width > 0
