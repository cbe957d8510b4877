"""The audio plugin: registry entries, the words data module, a flow model on log-mel, writers, judge."""

import pytest
import torch

from framework.core import plugins
from framework.core.encoders import resolve
from framework.training.module import GenerativeModule
from modalities.audio import AudioModality
from modalities.audio.data import WordsData, words_specs
from modalities.audio.speech import PITCHES, SPEAKERS, WORDS

TINY_MEL = {"name": "mel", "n_mels": 16, "frames_per_token": 4, "gl_iters": 4}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    dm = WordsData(n_train=4, n_val=2, batch_size=2, cache_dir=str(tmp_path_factory.mktemp("words")))
    dm.setup()
    return dm


def test_every_listed_condition_is_one_a_shipped_recipe_takes():
    """`polyguide modalities` lists what a model accepts: the music data's tempo label, which no
    model conditions on, is not offered."""
    from omegaconf import OmegaConf

    audio = plugins.get("audio")
    taken = {c["name"] for p in audio.recipes() if p.suffix == ".yaml"
             for c in OmegaConf.load(p).get("model", {}).get("conditions", None) or []}
    assert set(audio.conditions) <= taken and "tempo" not in audio.conditions


def test_registry_lists_the_audio_plugin():
    audio = plugins.get("audio")
    assert isinstance(audio, AudioModality) and "audio" in plugins.available()
    assert set(audio.representations) >= {"mel", "codec"} and set(audio.datamodules) >= {"words"}
    assert set(audio.conditions) >= {"word", "speaker", "pitch"}
    assert resolve("audio/melody") is audio.encoders["melody"]
    assert {p.name for p in audio.recipes()} >= {"words_flow.yaml", "codec.yaml"}
    with pytest.raises(plugins.PluginError, match="has no representation 'wav'"):
        audio.codec("wav")
    assert len(SPEAKERS) >= 12 and len(WORDS) == 10 and PITCHES == ("low", "mid", "high")


def test_words_batches(data):
    batch = next(iter(data.train_dataloader()))
    assert batch["media"].shape == (2, 1, 16_000) and set(batch["conditions"]) == {"word", "speaker", "pitch"}
    audio, labels = data.split("val")
    assert audio.shape == (2, 1, 16_000) and labels["word"].dtype == torch.long
    assert not torch.equal(audio, data.split("train")[0][:2])  # different render seeds
    specs = words_specs()
    assert specs["word"].labels == WORDS and specs["speaker"].labels == SPEAKERS
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        data.split("test")


def test_a_flow_model_trains_and_samples_audio(data):
    model = GenerativeModule(family="flow", modality="audio", representation=dict(TINY_MEL),
                             conditions=[{"name": "word", "labels": list(WORDS)},
                                         {"name": "speaker", "labels": list(SPEAKERS)}],
                             backbone={"dim": 32, "depth": 1, "heads": 2},
                             guidance=["independent([word, speaker], [3, 2])"])
    assert model.shape == (16, 64)
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = next(iter(data.train_dataloader()))
    batch["conditions"] = {k: batch["conditions"][k] for k in ("word", "speaker")}
    loss = model.training_step(batch, 0)
    loss.backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    out = model.sample({"word": "seven", "speaker": "en-us+f1"}, n=2, steps=3, seed=0)
    assert out.samples.shape == (2, 16, 64) and out.media.shape == (2, 1, 16_000) and out.nfe == 9
    again = model.sample({"word": "seven", "speaker": "en-us+f1"}, n=2, steps=3, seed=0)
    assert torch.equal(out.media, again.media)


def test_write_gives_wavs_a_grid_and_a_page(data, tmp_path):
    audio, _ = data.split("train")
    files = plugins.get("audio").write(audio, tmp_path, rows=["a", "b"], title="words")
    names = {f.name for f in files}
    assert {"grid.png", "index.html"} <= names and len([n for n in names if n.endswith(".wav")]) == 4


def test_the_words_judge_scores_real_clips(tmp_path, monkeypatch):
    from modalities.audio import plugin, speech

    calls = []
    real_load = speech.load_words

    def small(n, seed, cache_dir=None):  # the judge's own sets, shrunk for the test
        calls.append((n, seed))
        return real_load(min(n, 30), seed, tmp_path)

    monkeypatch.setattr(speech, "load_words", small)
    judge = plugin.words_judge(tmp_path, epochs=1)
    assert {s for _, s in calls} == {1000, 1001} and (tmp_path / "judge-words.pt").exists()
    held = real_load(30, 1001, tmp_path)
    scores = judge.evaluate(held.audio, {"word": held.word, "speaker": held.speaker})
    assert {"acc_word", "acc_speaker", "acc_all", "fd", "diversity"} <= set(scores)
    calls.clear()
    plugin.words_judge(tmp_path, epochs=1)  # cached: the training clips are not rendered again
    assert {s for _, s in calls} == {1001}
    with pytest.raises(ValueError, match="no audio judge"):
        plugins.get("audio").judge({"colour": None}, None, tmp_path)
