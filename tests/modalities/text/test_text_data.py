"""The Shakespeare data module: batch layout, windows that fit the codec, determinism, and a
token model trained one step on its batches through the framework."""

import pytest
import torch

from framework.core import plugins
from framework.training.module import GenerativeModule
from modalities.text import TextModality
from modalities.text.corpus import GENRES, VAL_PLAYS
from modalities.text.data import ShakespeareData


@pytest.fixture(scope="module")
def data(codec, tokenizer_name):
    dm = ShakespeareData(length=32, tokenizer=tokenizer_name, cache_dir=str(codec.path.parent),
                         batch_size=16)
    dm.setup()
    return dm


def test_batches_hold_byte_media_conditions_and_speaker_presence(data):
    batch = next(iter(data.train_dataloader()))
    assert set(batch) == {"media", "conditions", "present"}
    assert batch["media"].dtype == torch.uint8 and batch["media"].shape == (16, data._train.media.shape[1])
    assert set(batch["conditions"]) == {"genre", "speaker"} and set(batch["present"]) == {"speaker"}
    assert batch["conditions"]["genre"].shape == batch["conditions"]["speaker"].shape == (16,)
    assert batch["present"]["speaker"].dtype == torch.bool
    assert data.specs["genre"].labels == GENRES and len(data.specs["speaker"].labels) == 12
    ds = data._train
    assert int(ds.conditions["genre"].max()) == 2 and int(ds.conditions["speaker"].max()) == 11
    hamlet = torch.tensor([p == "hamlet" for p in ds.plays])
    labelled = ds.present["speaker"]
    assert 0.1 < float(labelled.float().mean()) < 0.3  # the top 12 speakers' share of windows
    assert (ds.conditions["speaker"][~labelled] == 0).all()  # absent: value 0, null in the model
    assert (ds.conditions["speaker"][hamlet & labelled] == data.speakers.index("HAMLET")).any()


def test_windows_fit_the_codec_exactly(data, codec):
    for ds, rows in ((data._train, slice(None, None, 4)), (data._val, slice(None))):
        ids = codec.encode(ds.media[rows])  # the codec's length is 32, like the data's
        assert torch.equal((ids >= 2).sum(1), ds.n_tokens[rows])  # counted exactly, nothing cut
        assert ((ids == codec.eos_id).sum(1) == 1).all()
        assert (ds.n_tokens >= data.min_tokens).all() and (ds.n_tokens <= 31).all()
    assert codec.decode_text(codec.encode(data._train.media[:50])) == data._train.texts[:50]


def test_split_by_play_and_determinism(data, codec, tokenizer_name):
    assert set(data._val.plays) == set(VAL_PLAYS) and not set(data._val.plays) & set(data._train.plays)
    assert set(data._val.conditions["genre"].tolist()) == {0, 1, 2}
    stats = data.stats()
    assert all(stats["train"][g]["windows"] > 3000 and stats["val"][g]["windows"] > 300 for g in GENRES)
    again = ShakespeareData(length=32, tokenizer=tokenizer_name, cache_dir=str(codec.path.parent),
                            batch_size=16)
    a, b = next(iter(data.train_dataloader())), next(iter(again.train_dataloader()))
    assert torch.equal(a["media"], b["media"])
    assert torch.equal(a["conditions"]["genre"], b["conditions"]["genre"])
    assert torch.equal(data._val.media, again._val.media)


def test_an_autoregressive_model_trains_on_the_batches(data, codec, tokenizer_name):
    assert isinstance(plugins.get("text"), TextModality)  # registered in pyproject.toml
    specs = [{"name": n, "labels": list(s.labels)} for n, s in data.specs.items()]
    model = GenerativeModule(family="autoregressive", modality="text", conditions=specs,
                             representation={"name": "bpe", "tokenizer": tokenizer_name, "length": 32,
                                             "cache_dir": str(codec.path.parent)},
                             backbone={"dim": 32, "depth": 1, "heads": 2})
    assert model.shape == (32,) and model.family.vocab_size == 512
    batch = next(iter(data.train_dataloader()))
    x, conds = model._batch(batch)
    assert x.shape == (16, 32) and torch.equal(conds.present["speaker"], batch["present"]["speaker"])
    loss = model.family.loss(model.backbone, x, model.dropout.apply(conds)).detach()
    assert torch.isfinite(loss) and 5 < float(loss) < 7  # ≈ log 512 before training
    out = model.sample({"genre": "comedy"}, n=2, steps=6, seed=0, init=codec.prompt("Who's there?", 2))
    assert out.samples.shape == (2, 6) and out.media.dtype == torch.uint8
