"""Writing audio samples so a person can look and listen: WAVs, a spectrogram grid, an HTML page.

:func:`write_audio` writes, under one folder, ``sample_000.wav`` … (16-bit PCM, one per sample),
``grid.png`` (log-mel spectrograms, one labelled row per group of samples) and ``index.html``
(the grid and an ``<audio>`` player per sample, grouped by row).
"""

from __future__ import annotations

import html
import io
import textwrap
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from framework.core.atomic import atomic_write

from .features import SAMPLE_RATE, as_mono, log_mel, save_wav

__all__ = ["spectrogram_figure", "spectrogram_grid", "spectrogram_image", "write_audio"]

_PX_PER_SECOND = 200  # spectrogram columns per second of audio (at most 800 a tile)
TILE_PX = 220  # the least width and height of a grid tile, in pixels (at 100 dpi)


def spectrogram_image(media: torch.Tensor, sample_rate: int = SAMPLE_RATE, n_mels: int = 64) -> torch.Tensor:
    """Coloured log-mel spectrograms ``[B, 3, n_mels, W]`` in ``[0, 1]`` of audio ``[B, (1,) T]``:
    low frequencies at the bottom, 80 dB of range below each batch's loudest bin (magma colours).
    A clip shorter than one STFT window (1,024 samples at 16 kHz; an empty one included) is drawn
    padded with silence to that length."""
    from matplotlib import colormaps

    wave = as_mono(media.detach().cpu())
    seconds = wave.shape[-1] / sample_rate
    width = int(max(16, min(800, round(_PX_PER_SECOND * seconds))))
    n_fft = 1024 if sample_rate >= 16_000 else 512
    if wave.shape[-1] < n_fft:  # shorter than one STFT window (empty included): drawn padded with silence
        wave = torch.nn.functional.pad(wave, (0, n_fft - wave.shape[-1]))
    mel = log_mel(wave, sample_rate=sample_rate, n_fft=n_fft, hop=max(1, wave.shape[-1] // width),
                  n_mels=n_mels)[..., :width]
    db = mel  # dB
    top = db.amax()
    level = ((db - (top - 80)) / 80).clamp(0, 1).flip(1)  # [B, n_mels, W], high bands first
    rgb = colormaps["magma"](level.numpy())[..., :3]  # [B, n_mels, W, 3]
    return torch.from_numpy(rgb).float().permute(0, 3, 1, 2)


def spectrogram_figure(media: torch.Tensor, *, rows: Sequence[str] | None = None,
                       cols: Sequence[str] | None = None, title: str | None = None,
                       sample_rate: int = SAMPLE_RATE):
    """The matplotlib figure of :func:`spectrogram_grid` (drawn, so label extents are final);
    the caller closes it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tiles = spectrogram_image(media, sample_rate)  # [B, 3, n_mels, W]
    n = tiles.shape[0]
    if rows is not None:
        if len(rows) == 0 or n % len(rows):
            raise ValueError(f"{n} samples do not fill {len(rows)} rows evenly")
        n_rows, n_cols = len(rows), n // len(rows)
    else:  # unlabelled: rows of at most 8, the last one may be short
        n_cols = min(n, 8)
        n_rows = -(-n // n_cols)
    if cols is not None and len(cols) != n_cols:
        raise ValueError(f"{len(cols)} column labels for {n_cols} columns")
    seconds = media.shape[-1] / sample_rate
    tile_h = TILE_PX / 100  # inches at 100 dpi
    tile_w = tile_h * max(1.0, seconds / 2)  # a 1-s word as wide as high, a 4-s clip twice
    aspect = tile_w / tile_h  # tile width / height
    width = (1.6 if rows else 0.2) + n_cols * (tile_w + 0.1)  # inches
    # the title wraps to the figure's width (about 11 characters an inch at 10 pt)
    title_lines = textwrap.wrap(title, max(20, int(width * 11))) if title else []
    fig, axes = plt.subplots(n_rows, n_cols, squeeze=False, layout="constrained",
                             figsize=(width, 0.1 + 0.2 * len(title_lines) + (0.3 if cols else 0)
                                      + n_rows * (tile_h + 0.15)))
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        ax.imshow(tiles[k].permute(1, 2, 0).numpy(), aspect="auto", interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        i, j = divmod(k, n_cols)
        if rows and j == 0:  # long labels wrap; constrained layout reserves their width
            ax.set_ylabel(textwrap.fill(str(rows[i]), 18), rotation=0, ha="right", va="center",
                          fontsize=9)
        if cols and i == 0:
            ax.set_title(textwrap.fill(str(cols[j]), max(8, int(12 * aspect))), fontsize=9)
    if title_lines:
        fig.suptitle("\n".join(title_lines), fontsize=10)
    fig.canvas.draw()
    return fig


def spectrogram_grid(media: torch.Tensor, *, rows: Sequence[str] | None = None,
                     cols: Sequence[str] | None = None, title: str | None = None,
                     sample_rate: int = SAMPLE_RATE) -> Image.Image:
    """A labelled grid of log-mel spectrograms of audio ``[B, (1,) T]``: ``len(rows)`` rows (one
    label each, left of the row), ``len(cols)`` column labels above the first row, a title above.

    Laid out by matplotlib's constrained layout, so labels of any length get their own space and
    neither overlap a tile or each other nor are cut at the edge; long labels wrap.
    """
    import matplotlib.pyplot as plt

    fig = spectrogram_figure(media, rows=rows, cols=cols, title=title, sample_rate=sample_rate)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _page(title: str | None, grid: str, groups: list[tuple[str | None, list[str]]]) -> str:
    esc = html.escape
    parts = ["<!doctype html>", '<html><head><meta charset="utf-8">',
             f"<title>{esc(title or 'audio samples')}</title>",
             "<style>body{font-family:sans-serif;margin:1em} .row{margin:.6em 0}"
             " .clip{display:inline-block;margin:.2em;text-align:center;font-size:small}"
             " audio{width:13em}</style></head><body>",
             f"<h1>{esc(title or 'audio samples')}</h1>",
             f'<p><img src="{esc(grid)}" alt="log-mel spectrograms, one row per label"></p>']
    for label, files in groups:
        parts.append('<div class="row">' + (f"<h3>{esc(label)}</h3>" if label else ""))
        for f in files:
            parts.append(f'<div class="clip"><audio controls preload="none" src="{esc(f)}"></audio>'
                         f"<br>{esc(f)}</div>")
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_audio(media: torch.Tensor, out: Path | str, *, rows: Sequence[str] | None = None,
                title: str | None = None, cols: Sequence[str] | None = None,
                sample_rate: int = SAMPLE_RATE) -> list[Path]:
    """Write a batch of audio ``[B, (1,) T]`` in ``[-1, 1]`` under ``out``; returns the files written.

    ``rows`` labels equal groups of consecutive samples (``B`` must divide evenly), ``title`` the
    whole set, ``cols`` the columns of the grid. Files: ``sample_000.wav`` …, ``grid.png``, ``index.html``.
    """
    out = Path(out)
    wave = as_mono(media.detach().cpu())
    n = wave.shape[0]
    if rows is not None and (len(rows) == 0 or n % len(rows)):
        raise ValueError(f"{n} samples do not fill {len(rows)} rows evenly")
    image = spectrogram_grid(wave, rows=rows, cols=cols, title=title, sample_rate=sample_rate)  # checks cols
    out.mkdir(parents=True, exist_ok=True)
    names = [f"sample_{i:03d}.wav" for i in range(n)]
    files = [save_wav(out / name, w, sample_rate) for name, w in zip(names, wave, strict=True)]
    grid = out / "grid.png"
    atomic_write(grid, lambda tmp: image.save(tmp, format="PNG"))
    per_row = n // len(rows) if rows else n
    groups = [(rows[i] if rows else None, names[i * per_row:(i + 1) * per_row])
              for i in range(len(rows) if rows else 1)]
    page = out / "index.html"
    text = _page(title, grid.name, groups)
    atomic_write(page, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return [*files, grid, page]
