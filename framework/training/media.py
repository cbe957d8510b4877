"""Validation samples into TensorBoard: image grids, audio clips, text, and whatever else the modality
writes as pictures (motion: its animated stick-figure GIF grid).

TensorBoard's image panel shows any encoded image, animated GIFs included (torch's ``add_video`` writes
GIFs the same way, through moviepy, which polyguide does not need): a file the modality's own writer
made is logged as it is, so what TensorBoard shows is what ``polyguide sample`` writes.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Any

import torch

from framework.core import plugins

__all__ = ["log_encoded_image", "log_samples"]

#: files from a modality's writer that are logged as (possibly animated) images
PICTURES = {".gif", ".png"}


def log_samples(tb: Any, tag: str, step: int, samples: torch.Tensor, media: torch.Tensor, codec: Any,
                modality: str | None) -> list[str]:
    """Log one validation label's samples to a ``SummaryWriter``; the kinds logged.

    Args:
        tb: ``torch.utils.tensorboard.SummaryWriter`` (``TensorBoardLogger.experiment``).
        tag: the label's tag, ``val/<label>``.
        step: the global step.
        samples: the generator's samples ``[B, ...]`` (token ids for text models).
        media: the decoded media ``[B, ...]``: images ``[B, C, H, W]`` in [0, 1] (C = 1 or 3), mono audio
            ``[B, 1, T]`` in [-1, 1] (of the audio modality, or a codec with a ``sample_rate``), or
            anything the modality's ``write`` takes (motion ``[B, T, 22, 3]``).
        codec: the model's codec: ``decode_text`` (text models) and ``sample_rate`` (audio, else 16 kHz).
        modality: the model's modality name, whose writer draws media of other shapes, or ``None``.

    Returns:
        ``["text"]``, ``["images"]``, ``["audio"]``, the written files' suffixes (``[".gif"]``), or ``[]``
        when nothing could be shown (no modality, or a writer that makes no pictures).
    """
    if hasattr(codec, "decode_text"):
        texts = codec.decode_text(samples.cpu())
        tb.add_text(tag, "\n\n".join(f"    {t}" for t in texts), step)
        return ["text"]
    if media.ndim == 4 and media.shape[1] in (1, 3):
        tb.add_images(tag, media.float().clamp(0, 1).cpu(), step)
        return ["images"]
    if media.ndim == 3 and media.shape[1] == 1 and (modality == "audio" or hasattr(codec, "sample_rate")):
        rate = int(getattr(codec, "sample_rate", 16_000))  # (the toy points [B, 1, 2] are not audio)
        for i, clip in enumerate(media.float().clamp(-1, 1).cpu()):
            tb.add_audio(f"{tag}/{i}", clip, step, sample_rate=rate)
        return ["audio"]
    if not modality:
        return []
    logged = []
    with tempfile.TemporaryDirectory(prefix="polyguide-tb-") as tmp, \
            contextlib.redirect_stdout(io.StringIO()):  # a writer's remarks are for `sample`'s user
        files = plugins.get(modality).write(media.cpu(), Path(tmp), title=f"{tag}, step {step}")
        for i, path in enumerate(p for p in files if Path(p).suffix in PICTURES):
            log_encoded_image(tb, tag if i == 0 else f"{tag}/{i}", step, Path(path).read_bytes())
            logged.append(Path(path).suffix)
    return logged


def log_encoded_image(tb: Any, tag: str, step: int, data: bytes) -> None:
    """Log an encoded image file's bytes (PNG, or an animated GIF) as one TensorBoard image.

    Raises:
        ValueError: ``data`` is not an image Pillow can read.
    """
    from PIL import Image
    from tensorboard.compat.proto.summary_pb2 import Summary

    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            channels = 3 if im.mode == "P" else len(im.getbands())  # a GIF's palette holds RGB
    except OSError as e:
        raise ValueError(f"TensorBoard image {tag}: not an image file ({e})") from None
    image = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=data)
    tb._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
