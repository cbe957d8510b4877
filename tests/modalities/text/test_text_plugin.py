"""The text plugin: its registry attributes and the samples.txt writer."""

import pytest

from framework.core.plugins import Modality
from modalities.text import TextModality
from modalities.text.codecs import BPETokens, texts_to_media
from modalities.text.data import ShakespeareData


def test_plugin_attributes():
    m = TextModality()
    assert isinstance(m, Modality) and m.name == "text"
    assert dict(m.representations) == {"bpe": BPETokens}
    assert dict(m.datamodules) == {"shakespeare": ShakespeareData}
    assert set(m.conditions) == {"genre", "speaker"} and "comedy | history | tragedy" in m.conditions["genre"]
    assert m.recipes_dir.parts[-2:] == ("recipes", "text")
    assert m.recipes() == sorted(m.recipes_dir.glob("*.yaml"))


def test_write_one_block_per_sample_with_row_labels(tmp_path):
    texts = ["Who's there?", "Nay, answer me:\nstand, and unfold yourself.", "Long live the king!",
             "Bernardo?"]
    files = TextModality().write(texts_to_media(texts), tmp_path, rows=["comedy", "tragedy"], title="w=3")
    assert files == [tmp_path / "samples.txt", *[tmp_path / f"sample_{i:03d}.txt" for i in range(4)]]
    # one plain file per passage, its text alone
    assert [f.read_text(encoding="utf-8") for f in files[1:]] == [t + "\n" for t in texts]
    written = files[0].read_text(encoding="utf-8")
    assert written.startswith("# w=3\n")
    assert "=== comedy · sample 2 ===\nNay, answer me:\nstand, and unfold yourself.\n" in written
    assert "=== tragedy · sample 3 ===\nLong live the king!\n" in written
    plain = TextModality().write(texts, tmp_path / "plain")[0].read_text(encoding="utf-8")
    assert plain.split("\n")[0] == "=== sample 1 ===" and plain.count("===") == 8
    with pytest.raises(ValueError, match="rows evenly"):
        TextModality().write(texts, tmp_path, rows=["a", "b", "c"])
