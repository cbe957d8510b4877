"""The ``codec`` representation: a neural audio codec (transformers' ``EncodecModel``).

The codec is the class that also loads the pretrained EnCodec checkpoints, here with a small
config trained by our recipe (``recipes/audio/codec.yaml``, :mod:`.codec_train`) on this
modality's clips and saved with ``save_pretrained`` to a folder. The representation loads that
folder with ``from_pretrained`` (a local path: nothing is downloaded) and serves three layouts:

* ``tokens``: residual-VQ codes ``[K, T]`` (``K`` codebooks, ``T`` frames), ids in
  ``0 … codebook_size − 1``, for the autoregressive family (with its codebook delay pattern);
* ``flat``: the same codes as one sequence ``[K · T]`` (codebook-major), for the masked family;
* ``latents``: the encoder's continuous pre-quantisation latents ``[T, D]``, standardised with
  the statistics saved beside the weights (``polyguide_codec.json``), for diffusion and flow.

Every layout decodes with the same decoder; latents are residual-quantised first (by default), so
a generated latent is decoded as the codec decodes its own codes. The decoded level follows the
modality's policy (:func:`.features.limit_peak`: a clip louder than −1 dBFS is scaled down to it).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from framework.core import shipped
from framework.core.plugins import Codec

from .features import limit_peak

__all__ = ["STATS_FILE", "EncodecCodec", "latent_stats", "resolve_path", "rvq_decode", "rvq_encode"]

STATS_FILE = "polyguide_codec.json"  # latent mean/std and the training data, beside config.json
LAYOUTS = ("tokens", "flat", "latents")


def resolve_path(path: str | Path) -> Path:
    """A codec folder: absolute, relative to the working directory, or (for shipped codecs such as
    ``recipes/audio/checkpoints/codec``) the shipped folder of that name, in the checkout or the
    installed package (:func:`framework.core.shipped.resolve`)."""
    return shipped.resolve(path)


def _check_codec_sizes(folder: Path) -> None:
    """The sizes ``folder/config.json`` declares against the tensors ``model.safetensors`` holds,
    before anything is allocated (only the config, at most 1 MB, and the weights' header are read).

    Raises:
        ValueError: no ``model.safetensors`` (pickled weights are not loaded), or a config that is
            not an EnCodec config.
        framework.core.sizes.SizeError: a size that disagrees with the weights present.
    """
    from safetensors import SafetensorError, safe_open
    from transformers import EncodecConfig
    from transformers.models.encodec.modeling_encodec import EncodecModel

    from framework.core.sizes import check_within

    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise ValueError(f"codec {folder}: expected its weights in model.safetensors (written by "
                         f"save_pretrained)")
    try:
        if (folder / "config.json").stat().st_size > 1_000_000:
            raise ValueError("config.json is over 1 MB")
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        kind = raw.get("model_type") if isinstance(raw, dict) else type(raw).__name__
        if kind != "encodec":
            raise ValueError(f"model_type {kind!r} is not 'encodec'")
        config = EncodecConfig.from_dict(raw)
        with safe_open(str(weights), framework="pt") as f:
            shapes = {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
    except (OSError, ValueError, TypeError, SafetensorError) as e:
        raise ValueError(f"codec {folder}: unreadable config.json or model.safetensors "
                         f"({' '.join(str(e).split())[:200]})") from None
    check_within(lambda: EncodecModel(config), shapes, where=f"codec {folder}")


def rvq_encode(model, latents: torch.Tensor, codebooks: int) -> torch.Tensor:
    """Latents ``[B, D, T]`` → codes ``[B, K, T]`` with the first ``codebooks`` quantisers."""
    residual, codes = latents, []
    for layer in model.quantizer.layers[:codebooks]:
        idx = layer.encode(residual)  # [B, T]
        residual = residual - layer.decode(idx)
        codes.append(idx)
    return torch.stack(codes, 1)


def rvq_decode(model, codes: torch.Tensor) -> torch.Tensor:
    """Codes ``[B, K, T]`` → quantised latents ``[B, D, T]`` (the sum of the ``K`` codewords)."""
    return model.quantizer.decode(codes.transpose(0, 1))


def latent_stats(latents: torch.Tensor) -> dict[str, list[float]]:
    """Per-channel mean and standard deviation of latents ``[B, D, T]`` (for standardising)."""
    return {"mean": latents.mean((0, 2)).tolist(), "std": latents.std((0, 2)).clamp_min(1e-5).tolist()}


class EncodecCodec(Codec):
    """Audio ``[B, 1, samples]`` ↔ a trained ``EncodecModel``'s codes or latents.

    Args:
        path: the folder written by ``save_pretrained`` (``config.json`` + weights), e.g. the
            shipped ``recipes/audio/checkpoints/codec``; relative paths are also tried from the
            repository root.
        layout: ``tokens`` (``[K, T]``), ``flat`` (``[K · T]``) or ``latents`` (``[T, D]``).
        codebooks: how many of the codec's quantisers to use (default: all).
        samples: samples per clip (16,000: 1 s at 16 kHz); must be a multiple of the hop.
        quantize_latents: decode ``latents`` through the quantiser (snap to the codebooks) first.
    """

    def __init__(self, path: str = "recipes/audio/checkpoints/codec", layout: str = "tokens",
                 codebooks: int | None = None, samples: int = 16_000, quantize_latents: bool = True) -> None:
        from transformers.models.encodec.modeling_encodec import EncodecModel

        from framework.core.hf import quiet_loading

        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        folder = resolve_path(path)
        if not (folder / "config.json").is_file():
            raise ValueError(f"no codec at {str(path)!r}: expected a folder with config.json and weights "
                             f"(written by save_pretrained; train one with recipes/audio/codec.yaml)")
        _check_codec_sizes(folder)
        with quiet_loading():  # no "Loading weights" bar on a user's console
            self.model = EncodecModel.from_pretrained(str(folder), local_files_only=True).eval()
        self.model.requires_grad_(False)
        cfg = self.model.config
        total = len(self.model.quantizer.layers)
        self.codebooks = total if codebooks is None else int(codebooks)
        if not 1 <= self.codebooks <= total:
            raise ValueError(f"codebooks must be in 1..{total} for this codec, got {codebooks}")
        hop = int(torch.tensor(cfg.upsampling_ratios).prod())
        if samples % hop:
            raise ValueError(f"samples {samples} is not a multiple of the codec's hop {hop}")
        self.path, self.layout, self.samples, self.hop = str(path), layout, int(samples), hop
        self.sample_rate, self.frames, self.dim = int(cfg.sampling_rate), samples // hop, int(cfg.hidden_size)
        self.quantize_latents = bool(quantize_latents)
        self.vocab_size = int(cfg.codebook_size) if layout != "latents" else None
        stats_file = folder / STATS_FILE
        stats = json.loads(stats_file.read_text()) if stats_file.is_file() else {}
        if layout == "latents" and "mean" not in stats:
            raise ValueError(f"the codec at {str(path)!r} has no latent statistics ({STATS_FILE}); "
                             f"write them with modalities.audio.codec_train.export_codec")
        self.mean = torch.tensor(stats.get("mean", [0.0] * self.dim))[None, :, None]
        self.std = torch.tensor(stats.get("std", [1.0] * self.dim))[None, :, None]

    @property
    def shape(self) -> tuple[int, ...]:
        K, T = self.codebooks, self.frames
        return {"tokens": (K, T), "flat": (K * T,), "latents": (T, self.dim)}[self.layout]

    def _check(self, media: torch.Tensor) -> torch.Tensor:
        if media.ndim != 3 or media.shape[1] != 1 or media.shape[2] != self.samples:
            raise ValueError(f"expected mono audio [B, 1, {self.samples}] at {self.sample_rate} Hz, "
                             f"got {tuple(media.shape)}")
        return media.float()

    @torch.no_grad()
    def latents(self, media: torch.Tensor) -> torch.Tensor:
        """Audio ``[B, 1, samples]`` → pre-quantisation latents ``[B, D, T]`` (not standardised)."""
        return self.model.encoder(self._check(media).to(self.mean.device))

    @torch.no_grad()
    def codes(self, media: torch.Tensor) -> torch.Tensor:
        """Audio ``[B, 1, samples]`` → codes ``[B, K, T]``."""
        return rvq_encode(self.model, self.latents(media), self.codebooks)

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, K, T]`` → audio ``[B, 1, samples]`` (level policy applied)."""
        return limit_peak(self._decode_codes(codes))

    def _decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        vocab = self.model.config.codebook_size
        if codes.dtype.is_floating_point or bool(((codes < 0) | (codes >= vocab)).any()):
            raise ValueError(f"codec codes must be integer ids in 0..{vocab - 1}")
        return self.model.decoder(rvq_decode(self.model, codes.long()))[..., :self.samples]

    def encode(self, media: torch.Tensor) -> torch.Tensor:
        if self.layout == "latents":
            z = (self.latents(media) - self.mean) / self.std
            return z.transpose(1, 2)  # [B, T, D]
        codes = self.codes(media)
        return codes if self.layout == "tokens" else codes.reshape(codes.shape[0], -1)

    @torch.no_grad()
    def decode_unlimited(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's waveform ``[B, 1, samples]`` before the level policy (for measuring it)."""
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"expected codec {self.layout} [B, {', '.join(map(str, self.shape))}], "
                             f"got {tuple(x.shape)}")
        if self.layout == "latents":
            z = x.float().transpose(1, 2) * self.std + self.mean  # [B, D, T]
            if self.quantize_latents:
                z = rvq_decode(self.model, rvq_encode(self.model, z, self.codebooks))
            return self.model.decoder(z)[..., :self.samples]
        codes = x if self.layout == "tokens" else x.reshape(x.shape[0], self.codebooks, self.frames)
        return self._decode_codes(codes)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return limit_peak(self.decode_unlimited(x))
