"""Labelled PNG grids of images, and a guidance-sweep plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw

__all__ = ["grid_image", "save_grid", "save_sweep_plot"]

_BG, _FG = (255, 255, 255), (20, 20, 20)


def grid_image(media: torch.Tensor, *, rows: Sequence[str] | None = None, cols: Sequence[str] | None = None,
               title: str | None = None, scale: int = 4, pad: int = 2) -> Image.Image:
    """A grid of images ``[N, C, S, S]`` in ``[0, 1]``, ``len(rows)`` rows (or one square-ish block).

    Args:
        rows: one label per row (e.g. the guidance of that row); ``N`` must divide evenly.
        cols: one label per column.
        title: a line above the grid.
        scale: nearest-neighbour upscaling, so 16-pixel images stay legible.
    """
    if media.ndim != 4 or media.shape[1] not in (1, 3):
        raise ValueError(f"expected images [N, 1 or 3, H, W], got {tuple(media.shape)}")
    n = media.shape[0]
    n_rows = len(rows) if rows else max(1, int(n ** 0.5))
    if n % n_rows:
        raise ValueError(f"{n} images do not fill {n_rows} rows evenly")
    n_cols = n // n_rows
    imgs = (media.detach().float().cpu().clamp(0, 1) * 255).round().byte()
    if imgs.shape[1] == 1:
        imgs = imgs.expand(-1, 3, -1, -1)
    h, w = imgs.shape[2] * scale, imgs.shape[3] * scale
    draw_probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = 8 + max((draw_probe.textlength(r) for r in rows), default=0) if rows else 0
    top = (14 if title else 0) + (14 if cols else 0)
    canvas = Image.new("RGB", (int(left) + n_cols * (w + pad) + pad, top + n_rows * (h + pad) + pad), _BG)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, 1), title, fill=_FG)
    for j, label in enumerate(cols or []):
        draw.text((int(left) + pad + j * (w + pad), top - 13), str(label)[: max(3, w // 6)], fill=_FG)
    for i in range(n_rows):
        y = top + pad + i * (h + pad)
        if rows:
            draw.text((4, y + h // 2 - 5), rows[i], fill=_FG)
        for j in range(n_cols):
            tile = imgs[i * n_cols + j].permute(1, 2, 0).numpy()
            canvas.paste(Image.fromarray(tile).resize((w, h), Image.NEAREST),
                         (int(left) + pad + j * (w + pad), y))
    return canvas


def save_grid(media: torch.Tensor, path: Path | str, **kwargs) -> Path:
    """Write :func:`grid_image` to ``path`` (PNG); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid_image(media, **kwargs).save(path)
    return path


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
