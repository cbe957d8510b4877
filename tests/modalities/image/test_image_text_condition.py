"""The caption condition: MiniLM embeddings from the offline package, the same at training and sampling."""

import torch

from framework.core.conditions import Conditions
from modalities.image.data import ShapesData


def test_captions_are_embedded_and_encode_identically_from_raw_text():
    dm = ShapesData(n_train=48, n_val=8, text=True)
    dm.setup()
    text = dm._train.conditions["text"]
    assert text.shape == (48, 384)
    torch.testing.assert_close(text.norm(dim=1), torch.ones(48))
    c = dm._train.conditions
    caption = ShapesData.caption(int(c["shape"][0]), int(c["color"][0]), int(c["position"][0]))
    size = "small" if "small" in caption else "large"
    # the spec carries the encoder, so a checkpoint can embed a new prompt at sampling time
    raw = Conditions.from_raw(dm.specs, {"text": caption.replace("large", size)}, 2)
    assert raw.values["text"].shape == (2, 384)
    same = [i for i in range(48) if (c["shape"][i], c["color"][i], c["position"][i])
            == (c["shape"][0], c["color"][0], c["position"][0])]
    best = (text @ raw.values["text"][0]).argmax()
    assert int(best) in same or float(text[0] @ raw.values["text"][0]) > 0.95
    # different captions are different vectors
    other = Conditions.from_raw(dm.specs, {"text": "a large blue cross at the bottom right"}, 1)
    assert float(other.values["text"][0] @ raw.values["text"][0]) < 0.99
