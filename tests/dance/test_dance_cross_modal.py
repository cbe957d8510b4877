"""Cross-modal conditions are part of the plugin contract: a third-party modality (registered
through an entry point, as any plugin) declares the audio plugin's encoder in its condition spec;
a model trained on it samples from a WAV file. And the motion writer, given music, writes each
sample's music cut to the clip and an index.html that plays them in sync."""

from importlib.metadata import EntryPoint
from types import MappingProxyType

import lightning as L
import pytest
import torch
from torch.utils.data import StackDataset

from framework.core import plugins
from framework.core.conditions import Conditions
from framework.core.plugins import Codec, Modality
from framework.training.data import SplitData
from framework.training.module import GenerativeModule
from modalities.audio.features import SAMPLE_RATE, read_wav, save_wav
from modalities.audio.music import render


class _Frames(Codec):
    """A toy continuous codec: media ``[B, 64, 2]`` are their own tokens ``[B, 16, 8]``."""

    @property
    def shape(self):
        return (16, 8)

    def encode(self, media):
        return media.reshape(media.shape[0], 16, 8)

    def decode(self, x):
        return x.reshape(x.shape[0], 64, 2)


class Lights(Modality):
    """A third-party modality: two stage lights per frame, flashing to music."""

    name = "lights"
    representations = MappingProxyType({"frames": _Frames})
    conditions = MappingProxyType({"music": "an audio file (the audio plugin's 'audio/beats')"})


class _LightsData(SplitData):
    def build(self):
        music = torch.randn(8, 64, 5)
        media = music[..., 1:3].clone()
        data = StackDataset(media=media, conditions=StackDataset(music=music))
        return data, data


@pytest.fixture
def lights_installed(monkeypatch):
    real = plugins._entry_points
    ep = EntryPoint("lights", f"{__name__}:Lights", plugins.GROUP)
    monkeypatch.setattr(plugins, "_entry_points", lambda: {**real(), "lights": ep})


def _song(tmp_path, bpm=120.0):
    period = 60.0 / bpm
    notes = [(k * period, period, 60 + k % 7) for k in range(8)]
    return save_wav(tmp_path / "song.wav", torch.from_numpy(render(notes, "piano", 4.0)))


def test_third_party_modality_declares_the_audio_encoder(lights_installed, tmp_path):
    assert plugins.get("lights").name == "lights"
    torch.manual_seed(0)
    model = GenerativeModule(family="flow", modality="lights", representation={"name": "frames"},
                             conditions=[{"name": "music", "kind": "sequence", "dim": 5,
                                          "encoder": "audio/beats", "positions": True}],
                             backbone={"dim": 16, "depth": 1, "heads": 2}, guidance=["cfg(music, 3)"])
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(tmp_path), limit_val_batches=0)
    trainer.fit(model, datamodule=_LightsData(batch_size=4, seed=0))
    song = _song(tmp_path)
    conds = model.conditions({"music": str(song)}, 2)  # the spec's encoder: the audio plugin's
    assert conds.values["music"].shape == (2, 64, 5) and bool(conds.present["music"].all())
    out = model.sample({"music": str(song)}, "cfg(music, 3)", n=2, steps=2, seed=0)
    assert out.media.shape == (2, 64, 2) and torch.isfinite(out.media).all()


def test_motion_writer_plays_each_sample_with_its_music(tmp_path):
    from modalities.motion.dance.data import dance_specs
    from modalities.motion.dance.player import write_player
    from modalities.motion.skeleton import rest_positions

    song = _song(tmp_path, 100.0)
    conds = Conditions.from_raw(dance_specs(["music"]), {"music": str(song)}, 1)
    media = rest_positions().expand(1, 64, 22, 3).clone()
    files = plugins.get("motion").write(media, tmp_path / "out", rows=["a"], title="t", conditions=conds)
    assert [f.name for f in files] == ["motion.gif", "sample_00.bvh", "music_00.wav", "index.html"]
    cut = read_wav(tmp_path / "out" / "music_00.wav")[0]
    assert cut.shape == (round(3.2 * SAMPLE_RATE),)
    assert torch.allclose(cut, read_wav(song)[0][:cut.shape[0]], atol=2e-4)  # the song's first 3.2 s
    page = (tmp_path / "out" / "index.html").read_text()
    assert page.count("<canvas") == 1 and 'src="music_00.wav"' in page and "currentTime * FPS" in page
    # a sample whose music was dropped gets a silent track (its figure still runs on a clock)
    write_player(media, [None], tmp_path / "silent")
    assert float(read_wav(tmp_path / "silent" / "music_00.wav")[0].abs().max()) == 0.0
    assert "silent track" in (tmp_path / "silent" / "index.html").read_text()
