"""KeepChannels: the source channels (lf0, vuv, cap) come from the reference prediction, the
spectral envelope from the guided one, in every packed frame of a token."""

import pytest
import torch

from modalities.audio.guidance import SOURCE_CHANNELS, KeepChannels


class Fixed:
    """A stand-in expression with a fixed prediction (the op only calls ``check`` and ``value``)."""

    def __init__(self, value: torch.Tensor) -> None:
        self.v = value

    def check(self) -> None:
        pass

    def value(self, ctx, space):
        return self.v


def test_keep_channels_takes_the_source_from_the_reference():
    guided, ref = torch.randn(2, 25, 4 * 43), torch.randn(2, 25, 4 * 43)
    op = KeepChannels(Fixed(guided), Fixed(ref))
    out = op.compute(None, "x0").reshape(2, 25, 4, 43)
    g, r = guided.reshape(2, 25, 4, 43), ref.reshape(2, 25, 4, 43)
    assert SOURCE_CHANNELS == (0, 1, 2)
    torch.testing.assert_close(out[..., :3], r[..., :3])  # every frame of every token
    torch.testing.assert_close(out[..., 3:], g[..., 3:])


def test_keep_channels_rejects_bad_channels_and_layouts():
    x = torch.zeros(1, 5, 10)
    with pytest.raises(ValueError, match=r"in \[0, 43\)"):
        KeepChannels(Fixed(x), Fixed(x), keep=[43])
    with pytest.raises(ValueError, match="not a whole number of 43-channel frames"):
        KeepChannels(Fixed(x), Fixed(x)).compute(None, "x0")
