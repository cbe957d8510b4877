"""Labelled PNG grids."""

import pytest
import torch
from PIL import Image

from modalities.image import ImageModality
from modalities.image.writers import save_grid


def test_grid_has_one_tile_per_image_and_room_for_labels(tmp_path):
    imgs = torch.rand(12, 3, 16, 16)
    path = save_grid(imgs, tmp_path / "g.png", rows=["red circle", "blue square", "cross"], title="cfg 4",
                     scale=2, pad=2)
    im = Image.open(path)
    assert im.size[0] > 4 * (32 + 2) and im.size[1] >= 3 * (32 + 2) + 14
    # the last tile's bottom-right pixel is the last image's bottom-right pixel
    px = im.getpixel((im.size[0] - 3, im.size[1] - 3))
    assert tuple(px) == tuple((imgs[-1, :, -1, -1] * 255).round().byte().tolist())


def test_grid_rejects_uneven_rows(tmp_path):
    with pytest.raises(ValueError, match="10 images do not fill 3 rows evenly"):
        save_grid(torch.rand(10, 3, 8, 8), tmp_path / "g.png", rows=["a", "b", "c"])


def test_write_saves_the_grid_and_one_png_per_image_at_its_resolution(tmp_path):
    imgs = torch.rand(3, 3, 16, 16)
    files = ImageModality().write(imgs, tmp_path, title="t")
    assert [f.name for f in files] == ["grid.png", "sample_000.png", "sample_001.png", "sample_002.png"]
    for i, f in enumerate(files[1:]):
        im = Image.open(f)
        assert im.size == (16, 16) and im.mode == "RGB"
        assert tuple(im.getpixel((5, 7))) == tuple((imgs[i, :, 7, 5] * 255).round().byte().tolist())
    gray = ImageModality().write(torch.rand(2, 1, 8, 8), tmp_path / "gray")
    assert Image.open(gray[1]).mode == "L" and Image.open(gray[1]).size == (8, 8)
