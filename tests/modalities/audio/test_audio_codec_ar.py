"""The autoregressive family on codec tokens, end to end: a tiny trained codec saved to disk, clips
pre-encoded by it (``WordsCodesData``), two Lightning steps, then ``polyguide sample`` / ``eval``."""

import json

import lightning as L
import numpy as np
import pytest
import torch

from framework.cli.main import main
from framework.training.module import GenerativeModule
from modalities.audio import codec_data, plugin
from modalities.audio.codec import EncodecCodec
from modalities.audio.codec_data import WordsCodesData
from modalities.audio.codec_train import CodecModule, save_codec
from modalities.audio.metrics import AudioClassifier, AudioJudge
from modalities.audio.speech import PITCHES, SPEAKERS, WORDS, WordClips

# hop 320 (50 frames/s) like the recipe's codec, 2 codebooks of 16 codes (0.4 kbit/s), tiny widths
TINY = dict(sampling_rate=16_000, audio_channels=1, num_filters=2, hidden_size=8, codebook_dim=8,
            upsampling_ratios=[8, 5, 4, 2], codebook_size=16, target_bandwidths=[0.4], num_lstm_layers=1,
            normalize=False, chunk_length_s=None, use_causal_conv=False)


def fake_words(n: int, seed: int = 0, cache_dir=None) -> WordClips:
    """Stand-in for eSpeak renders (plumbing only): a tone burst per clip, labels from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(16_000) / 16_000
    f = 150 + 600 * torch.rand(n, 1, 1, generator=g)
    audio = 0.5 * torch.sin(2 * torch.pi * f * t) * ((t > 0.3) & (t < 0.7))
    labels = [torch.randint(len(v), (n,), generator=g) for v in (WORDS, SPEAKERS, PITCHES)]
    return WordClips(audio, *labels)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(codec folder, data cache folder, AR checkpoint trained two steps on pre-encoded clips)."""
    root = tmp_path_factory.mktemp("codec_ar")
    mp = pytest.MonkeyPatch()
    mp.setattr(codec_data, "load_words", fake_words)
    torch.manual_seed(0)
    clips = fake_words(6, 0)
    module = CodecModule(config=TINY, crop=None, vq_warmup=0)
    opt = module.configure_optimizers()
    for step in range(2):
        loss = module.train_losses(clips.audio, step)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    folder = save_codec(module.model, root / "codec", module.stats(clips.audio))
    rep = {"name": "codec", "path": str(folder), "layout": "tokens"}
    model = GenerativeModule(family="autoregressive", family_args={"codebooks": 2}, modality="audio",
                             representation=rep,
                             conditions=[{"name": "word", "labels": list(WORDS)},
                                         {"name": "speaker", "labels": list(SPEAKERS)}],
                             backbone={"dim": 16, "depth": 1, "heads": 2},
                             guidance=["cfg(word, 2)", "independent([word, speaker], [2, 2])"])
    data = WordsCodesData(codec=rep, n_train=4, n_val=2, batch_size=2, cache_dir=str(root))
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, default_root_dir=root)
    trainer.fit(model, datamodule=data)
    path = root / "ar.ckpt"
    trainer.save_checkpoint(path)
    yield folder, root, path
    mp.undo()


def test_codes_data_encodes_once_with_the_codec_and_caches(setup):
    folder, root, _ = setup
    rep = {"path": str(folder), "layout": "tokens"}
    data = WordsCodesData(codec=rep, n_train=4, n_val=2, batch_size=2, cache_dir=str(root))
    data.setup()
    codec = EncodecCodec(str(folder))
    clips = fake_words(4, 0)
    assert torch.equal(data._train.x, codec.encode(clips.audio))  # the oracle: the codec itself
    item = data._train[1]
    assert item["x"].shape == (2, 50) and item["x"].dtype == torch.long
    assert int(item["conditions"]["word"]) == int(clips.word[1])
    cached = sorted(root.glob("words-codes-*.npz"))
    assert len(cached) == 2  # train and val, written by the fixture's run
    with np.load(cached[0], allow_pickle=False) as f:
        assert f["x"].dtype == np.int16


def test_sample_decodes_codec_tokens_to_wavs_grid_and_page(setup, tmp_path, capsys):
    _, _, ckpt = setup
    out = tmp_path / "out"
    assert main(["sample", "--checkpoint", str(ckpt), "--cond", "word=seven", "--guidance", "cfg(word, 2)",
                 "--n", "2", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "NFE 102 (2.00/step)" in printed  # 50 frames + 1 delay step, two branches each
    assert len(list(out.glob("*.wav"))) == 2 and (out / "grid.png").exists()
    assert (out / "index.html").read_text().count("<audio") == 2


def test_eval_reports_word_accuracy_of_decoded_tokens(setup, tmp_path, monkeypatch):
    _, _, ckpt = setup
    held = fake_words(8, 5)
    clf = AudioClassifier({"word": len(WORDS), "speaker": len(SPEAKERS), "pitch": len(PITCHES)},
                          width=4, features=8).eval()
    monkeypatch.setattr(plugin, "words_judge", lambda cache: AudioJudge(clf, (held.audio, held.conditions())))
    assert main(["eval", "--checkpoint", str(ckpt), "--guidance", "cond(word)", "--guidance", "cfg(word, 2)",
                 "--conditions", "word", "--n", "2", "--cache", str(tmp_path),
                 "--out", str(tmp_path / "eval"), "--no-progress"]) == 0
    rows = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert [r["nfe"] for r in rows] == [51, 102] and 0 <= rows[1]["acc_word"] <= 1


def test_sample_refuses_a_partial_clip(setup, tmp_path, capsys):
    _, _, ckpt = setup
    assert main(["sample", "--checkpoint", str(ckpt), "--cond", "word=one", "--steps", "30",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "2 codebooks × 50 frames" in err and "Traceback" not in err


def test_fit_refuses_an_unreadable_codec_checkpoint_in_one_line(tmp_path, capsys):
    """``--ckpt_path`` of a class_path recipe (the codec) is read without pickle but not required to be a
    GenerativeModule's (that check refused the codec's own checkpoints, so a codec run could not resume)."""
    cfg = tmp_path / "codec.yaml"
    cfg.write_text(f"""
model:
  class_path: modalities.audio.codec_train.CodecModule
  init_args: {{config: {{num_filters: 2, hidden_size: 8, codebook_dim: 8, codebook_size: 16,
               target_bandwidths: [0.4]}}, crop: null}}
data:
  class_path: modalities.audio.data.WordsData
  init_args: {{n_train: 2, n_val: 2, batch_size: 2, cache_dir: {tmp_path}}}
trainer: {{max_steps: 1, logger: false, enable_progress_bar: false, default_root_dir: {tmp_path}}}
""")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["fit", "--config", str(cfg), "--ckpt_path", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"checkpoint {bad}: is a text file, not a checkpoint" in err and "Traceback" not in err
