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


def test_titles_wrap_to_the_grid_and_tau_is_a_real_glyph(tmp_path):
    from modalities.image.writers import label_font, wrap_text

    font = label_font()
    assert font.getmask("τ").getbbox() is not None  # DejaVu has τ: PIL's bitmap font has no such glyph
    long = "interval w=4, τ∈[0.2, 0.8]:  interval((shape, color), 4, 0.2, 0.8)   (NFE 51) " * 2
    lines = wrap_text(long, 120, font)
    assert len(lines) > 2 and all(font.getlength(line) <= 120 for line in lines)
    assert " ".join(lines).split() == long.split()  # nothing is cut off
    narrow = save_grid(torch.rand(4, 3, 8, 8), tmp_path / "g.png", title=long, scale=2)
    im = Image.open(narrow)
    assert im.size[0] < 200 and im.size[1] > len(lines) * 10  # wrapped, not widened nor cut
    assert wrap_text("x" * 50, 40, font) == [line for line in wrap_text("x" * 50, 40, font) if line]
    assert "".join(wrap_text("x" * 50, 40, font)) == "x" * 50  # an over-long word is split, not lost


@pytest.mark.parametrize("n", [7, 10, 32, 40])
def test_any_number_of_images_makes_a_grid_with_a_ragged_last_row(tmp_path, n):
    """`polyguide sample --n N` writes a grid for any N (it once needed ⌊√N⌋ to divide N)."""
    from modalities.image.writers import grid_image

    imgs = torch.rand(n, 3, 8, 8)
    im = grid_image(imgs, scale=1, pad=1)
    cols = (im.size[0] - 1) // 9
    rows = (im.size[1] - 1) // 9
    assert cols * rows >= n > cols * (rows - 1)  # every image has a tile, and no row is empty
    assert save_grid(imgs, tmp_path / f"g{n}.png").is_file()
