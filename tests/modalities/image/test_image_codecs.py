"""Image representations: pixel patches and palette tokens invert exactly (up to the palette)."""

import pytest
import torch

from modalities.image.codecs import Palette, Patches
from modalities.image.shapes import render

IMAGES = render(6, 16, torch.Generator().manual_seed(0)).images


@pytest.mark.parametrize("patch", [1, 2, 4])
def test_patches_invert_exactly_and_keep_pixels_together(patch):
    codec = Patches(size=16, channels=3, patch=patch)
    x = codec.encode(IMAGES)
    assert x.shape == (6, (16 // patch) ** 2, 3 * patch * patch) == (6, *codec.shape)
    assert x.min() >= -1 and x.max() <= 1
    torch.testing.assert_close(codec.decode(x), IMAGES)
    # token 0 holds exactly the top-left p×p pixels
    torch.testing.assert_close(x[:, 0].view(6, 3, patch, patch), IMAGES[:, :, :patch, :patch] * 2 - 1)


@pytest.mark.parametrize("patch", [1, 2])
def test_palette_tokens_are_nearest_colours_and_reencode_identically(patch):
    codec = Palette(size=16, palette="shapes", patch=patch)
    tokens = codec.encode(IMAGES)
    assert codec.vocab_size == 7 ** (patch * patch) and tokens.shape == (6, *codec.shape)
    assert int(tokens.max()) < codec.vocab_size
    decoded = codec.decode(tokens)
    assert torch.equal(codec.encode(decoded), tokens)
    # every decoded pixel is a palette colour, and the closest one to the original pixel
    dist = (IMAGES[:, None] - codec.colours.view(1, -1, 3, 1, 1)).pow(2).sum(2)  # [B, K, S, S]
    nearest = codec.colours[dist.argmin(1)].permute(0, 3, 1, 2)
    torch.testing.assert_close(decoded, nearest)


def test_codecs_reject_wrong_images():
    with pytest.raises(ValueError, match=r"expected images \[B, 3, 16, 16\], got \(2, 1, 16, 16\)"):
        Patches().encode(torch.zeros(2, 1, 16, 16))
    with pytest.raises(ValueError, match="patch 3 does not divide image size 16"):
        Palette(patch=3)
    with pytest.raises(ValueError, match="unknown palette 'rainbow'"):
        Palette(palette="rainbow")
