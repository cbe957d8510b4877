"""The procedural shapes: attributes are where and what the caption says."""

import torch

from modalities.image.data import DigitsData, ShapesData
from modalities.image.shapes import BACKGROUND, COLORS, RGB, render


def test_render_puts_the_requested_colour_at_the_requested_position():
    n = 48
    g = torch.Generator().manual_seed(1)
    b = render(n, 32, g, position=torch.arange(n) % 4)
    fg = (b.images - BACKGROUND.view(1, 3, 1, 1)).abs().sum(1) > 0.3  # [n, 32, 32]
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    for i in range(n):
        cx, cy = float(xs[fg[i]].mean()), float(ys[fg[i]].mean())
        right, bottom = int(b.position[i]) % 2 == 1, int(b.position[i]) >= 2
        assert (cx > 16) == right and (cy > 16) == bottom, (i, cx, cy, b.captions()[i])
        mean_fg = b.images[i][:, fg[i]].mean(1)
        assert int((mean_fg[None] - RGB).norm(dim=1).argmin()) == int(b.color[i])
    assert b.captions()[0].startswith("a ") and COLORS[int(b.color[0])] in b.captions()[0]


def test_shapes_of_one_kind_differ_from_the_other_kinds():
    one = {k: render(16, 16, torch.Generator().manual_seed(k), shape=torch.full((16,), k),
                     color=torch.zeros(16), position=torch.zeros(16), scale=torch.ones(16)).images.mean(0)
           for k in range(4)}
    for a in range(4):
        for b in range(a + 1, 4):
            assert (one[a] - one[b]).abs().sum() > 5.0, (a, b)


def test_data_modules_are_deterministic_and_split():
    a, b = ShapesData(n_train=64, n_val=16, batch_size=8), ShapesData(n_train=64, n_val=16, batch_size=8)
    a.setup(), b.setup()
    assert torch.equal(a._train.media, b._train.media) and not torch.equal(a._train.media[:16], a._val.media)
    batch = next(iter(a.train_dataloader()))
    assert batch["media"].shape == (8, 3, 16, 16)
    assert set(batch["conditions"]) == {"shape", "color", "position"}
    d = DigitsData(size=16)
    d.setup()
    assert len(d._train) + len(d._val) == 1797 and len(d._val) == 179
    assert d._train.media.shape[1:] == (1, 16, 16) and float(d._train.media.max()) == 1.0
