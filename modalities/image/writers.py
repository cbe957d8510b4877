"""Labelled PNG grids of images, and a guidance-sweep plot."""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from framework.core.atomic import atomic_write

__all__ = ["grid_image", "save_grid", "save_images", "save_sweep_plot"]

_BG, _FG = (255, 255, 255), (20, 20, 20)
_FONT_SIZE = 11


@functools.cache
def label_font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (shipped with matplotlib, found without importing it), which has the Greek and
    maths glyphs guidance labels use (τ, ∈, −); PIL's built-in bitmap font draws them as boxes."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.origin:
        path = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if path.is_file():
            return ImageFont.truetype(str(path), _FONT_SIZE)
    return ImageFont.load_default()


def _drawable(text: str, font) -> str:
    """``text`` with the glyphs a bitmap fallback font lacks spelled out (``τ`` → ``tau``)."""
    if isinstance(font, ImageFont.FreeTypeFont):
        return text
    for glyph, name in (("τ", "tau"), ("∈", " in "), ("−", "-"), ("·", "*"), ("λ", "lambda"), ("…", "...")):
        text = text.replace(glyph, name)
    return text.encode("latin-1", "replace").decode("latin-1")


def wrap_text(text: str, width: float, font) -> list[str]:
    """``text`` broken at spaces into lines no wider than ``width`` pixels (a longer word gets its
    own line and is cut by characters)."""
    lines: list[str] = []
    for word in text.split():  # any whitespace, newlines included
        line = f"{lines[-1]} {word}" if lines else word
        if lines and font.getlength(line) <= width:
            lines[-1] = line
            continue
        while len(word) > 1 and font.getlength(word) > width:  # one over-long word: split it
            cut = len(word) - 1
            while cut > 1 and font.getlength(word[:cut]) > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    return lines or [""]


def grid_image(media: torch.Tensor, *, rows: Sequence[str] | None = None, cols: Sequence[str] | None = None,
               title: str | None = None, scale: int = 4, pad: int = 2) -> Image.Image:
    """A grid of images ``[N, C, S, S]`` in ``[0, 1]``, ``len(rows)`` rows (or, for any ``N``, one
    square-ish block whose last row may be shorter).

    Args:
        rows: one label per row (e.g. the guidance of that row); ``N`` must divide evenly.
        cols: one label per column.
        title: text above the grid, wrapped to the grid's width (never cut off).
        scale: nearest-neighbour upscaling, so 16-pixel images stay legible.
    """
    if media.ndim != 4 or media.shape[1] not in (1, 3):
        raise ValueError(f"expected images [N, 1 or 3, H, W], got {tuple(media.shape)}")
    n = media.shape[0]
    if rows:
        n_rows = len(rows)
        if n % n_rows:
            raise ValueError(f"{n} images do not fill {n_rows} rows evenly")
        n_cols = n // n_rows
    else:  # a square-ish block: ⌊√N⌋ full rows when they divide N, else ⌈√N⌉ columns, the last row ragged
        n_rows = max(1, math.isqrt(n))
        n_cols = n // n_rows if n % n_rows == 0 else math.isqrt(n - 1) + 1
        n_rows = -(-n // n_cols)
    imgs = (media.detach().float().cpu().clamp(0, 1) * 255).round().byte()
    if imgs.shape[1] == 1:
        imgs = imgs.expand(-1, 3, -1, -1)
    h, w = imgs.shape[2] * scale, imgs.shape[3] * scale
    font = label_font()
    rows = [_drawable(str(r), font) for r in rows] if rows else rows
    left = 8 + max((font.getlength(r) for r in rows), default=0) if rows else 0
    width = int(left) + n_cols * (w + pad) + pad
    line_h = _FONT_SIZE + 3
    title_lines = wrap_text(_drawable(title, font), max(width - 2 * pad, 60), font) if title else []
    if title_lines:
        width = max(width, int(max(font.getlength(t) for t in title_lines)) + 2 * pad)
    top = len(title_lines) * line_h + (14 if cols else 0)
    canvas = Image.new("RGB", (width, top + n_rows * (h + pad) + pad), _BG)
    draw = ImageDraw.Draw(canvas)
    for k, line in enumerate(title_lines):
        draw.text((pad, 1 + k * line_h), line, fill=_FG, font=font)
    for j, label in enumerate(cols or []):
        draw.text((int(left) + pad + j * (w + pad), top - 13), _drawable(str(label), font)[: max(3, w // 6)],
                  fill=_FG, font=font)
    for i in range(n_rows):
        y = top + pad + i * (h + pad)
        if rows:
            draw.text((4, y + h // 2 - 6), rows[i], fill=_FG, font=font)
        for j in range(min(n_cols, n - i * n_cols)):
            tile = imgs[i * n_cols + j].permute(1, 2, 0).numpy()
            canvas.paste(Image.fromarray(tile).resize((w, h), Image.NEAREST),
                         (int(left) + pad + j * (w + pad), y))
    return canvas


def save_grid(media: torch.Tensor, path: Path | str, **kwargs) -> Path:
    """Write :func:`grid_image` to ``path`` (PNG); returns the path."""
    image = grid_image(media, **kwargs)
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def save_images(media: torch.Tensor, out: Path | str, scale: int = 1) -> list[Path]:
    """One PNG per image ``[N, C, S, S]`` in ``[0, 1]``: ``out/sample_000.png`` …, at the image's
    own resolution (``scale`` > 1 enlarges with nearest-neighbour); returns the paths."""
    if media.ndim != 4 or media.shape[1] not in (1, 3):
        raise ValueError(f"expected images [N, 1 or 3, H, W], got {tuple(media.shape)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    imgs = (media.detach().float().cpu().clamp(0, 1) * 255).round().byte()
    paths = []
    for i, img in enumerate(imgs):
        arr = img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()
        pic = Image.fromarray(arr)
        if scale > 1:
            pic = pic.resize((pic.width * scale, pic.height * scale), Image.NEAREST)
        paths.append(atomic_write(out / f"sample_{i:03d}.png",
                                  lambda tmp, pic=pic: pic.save(tmp, format="PNG")))
    return paths


def save_sweep_plot(results: Mapping[str, Mapping[float, Mapping[str, float]]], path: Path | str,
                    x: str = "fd", y: str = "acc_all") -> Path:
    """Plot one line per method through its guidance weights: ``results[method][w] = metrics``.

    The default axes show the trade-off: Fréchet distance (lower is closer to real data) against
    all-attributes accuracy, each point annotated with its weight.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for method, by_w in results.items():
        ws = sorted(by_w)
        ax.plot([by_w[w][x] for w in ws], [by_w[w][y] for w in ws], marker="o", label=method)
        for w in ws:
            ax.annotate(f"{w:g}", (by_w[w][x], by_w[w][y]), textcoords="offset points", xytext=(4, 3),
                        fontsize=7)
    ax.set_xlabel({"fd": "Fréchet distance to real images (classifier features) ↓"}.get(x, x))
    ax.set_ylabel({"acc_all": "all attributes right ↑"}.get(y, y))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
