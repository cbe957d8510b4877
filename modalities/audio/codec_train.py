"""Training the ``codec`` representation: a small transformers ``EncodecModel`` on this modality's
clips (``polyguide fit --config recipes/audio/codec.yaml``).

transformers ships EnCodec's architecture and inference, not its training, so this module adds the
parts of the EnCodec recipe (Défossez et al. 2022, "High Fidelity Neural Audio Compression") that
training needs, around the model's own encoder, quantiser codebooks and decoder:

* residual vector quantisation with a straight-through estimator, codebooks updated by an
  exponential moving average of their assigned latents (written into the model's own
  ``embed``/``embed_avg``/``cluster_size`` buffers, so ``save_pretrained`` saves them), codebooks
  initialised from latents of the first batch, and dead codes restarted from current latents;
* the commitment loss ``‖z − sg(q)‖²``;
* reconstruction losses: time-domain L1 and a multi-scale log-mel L1 (STFT sizes 256 … 2048).
  Adversarial losses are left out (optional in the paper; CPU budget).

At the end of training (and by :func:`export_codec` from any checkpoint) the model is saved with
``save_pretrained`` into a folder, atomically, with the latent statistics the ``latents`` layout
standardises with.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from .codec import STATS_FILE, latent_stats, rvq_decode, rvq_encode
from .mel import mel_filters

__all__ = ["CodecModule", "export_codec", "multiscale_mel_loss", "save_codec"]

MEL_SCALES = (256, 512, 1024, 2048)


def multiscale_mel_loss(estimate: torch.Tensor, target: torch.Tensor, sample_rate: int,
                        scales: tuple[int, ...] = MEL_SCALES, floor_db: float = 0.0) -> torch.Tensor:
    """Mean over STFT sizes ``n`` (hop ``n/4``, ``min(64, n/8)`` mel bands) of
    ``|dB(â) − dB(a)| / 10`` for audio ``[B, N]``, where ``dB(x) = 10·log10(mel(x) + 10^(floor_db/10))``.

    The floor is added rather than clamped, so a near-silent output (a freshly initialised
    decoder) still gets a gradient. Power is the raw ``|STFT|²`` (loud speech ≈ 30 dB at
    ``n = 256``, 50 dB at 2048); the 0-dB floor keeps digital silence in the data (eSpeak's
    pauses) from dominating the loss with errors far below anything audible.
    """
    eps = 10 ** (floor_db / 10)
    losses = []
    for n in scales:
        fb = mel_filters(n, min(64, n // 8), sample_rate).to(target.device)
        window = torch.hann_window(n, device=target.device)
        db = []
        for x in (estimate, target):
            spec = torch.stft(x, n, n // 4, window=window, center=True, return_complex=True)
            mel = (spec.real.square() + spec.imag.square()).transpose(1, 2) @ fb
            db.append(10 * torch.log10(mel + eps))
        losses.append((db[0] - db[1]).abs().mean() / 10)
    return torch.stack(losses).mean()


def save_codec(model, dest: str | Path, stats: dict[str, Any]) -> Path:
    """``model.save_pretrained`` into ``dest`` with ``stats`` as :data:`~.codec.STATS_FILE`, atomically:
    written into a temporary folder beside ``dest``, then swapped in by renames."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        model.save_pretrained(str(tmp))
        (tmp / STATS_FILE).write_text(json.dumps(stats, indent=1))
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


class CodecModule(L.LightningModule):
    """Trains a transformers ``EncodecModel`` built from ``config`` (``EncodecConfig`` fields).

    Args:
        config: ``EncodecConfig`` keyword arguments; the defaults give a 16-kHz mono codec with
            hop 320 (50 frames/s), 4 codebooks of 256 codes (1.6 kbit/s) and 64-d latents.
        crop: training crop length in samples (random crops of the clips; ``None``: whole clips).
        lr: Adam learning rate (β = 0.5, 0.9, as in EnCodec).
        l1_weight, mel_weight, commit_weight: loss weights (time-domain L1, multi-scale mel,
            commitment).
        ema_decay: codebook EMA decay; dead_threshold: a code whose EMA count falls below it is
            restarted from a random latent of the batch.
        export_to: a folder the trained codec is saved to (``save_pretrained``) when training ends.
    """

    def __init__(self, config: dict[str, Any] | None = None, crop: int | None = 8000, lr: float = 1e-3,
                 l1_weight: float = 0.1, mel_weight: float = 1.0, commit_weight: float = 1.0,
                 ema_decay: float = 0.99, dead_threshold: float = 0.5, export_to: str | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        from transformers import EncodecConfig, EncodecModel

        cfg = dict(sampling_rate=16_000, audio_channels=1, num_filters=16, hidden_size=64, codebook_dim=64,
                   upsampling_ratios=[8, 5, 4, 2], codebook_size=256, target_bandwidths=[1.6],
                   num_lstm_layers=1, normalize=False, chunk_length_s=None, use_causal_conv=False)
        cfg.update(config or {})
        self.model = EncodecModel(EncodecConfig(**cfg))
        self.hop = int(torch.tensor(self.model.config.upsampling_ratios).prod())
        if crop is not None and crop % self.hop:
            raise ValueError(f"crop {crop} must be a multiple of the codec's hop {self.hop}")

    @property
    def codebooks(self) -> int:
        return len(self.model.quantizer.layers)

    def _quantize(self, z: torch.Tensor, update: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Latents ``[B, D, T]`` → (straight-through quantised ``[B, D, T]``, codes ``[B, K, T]``,
        commitment loss). With ``update``, codebooks move towards their assigned latents (EMA)."""
        residual, quantized, codes, commit = z.detach(), torch.zeros_like(z), [], z.new_zeros(())
        hp = self.hparams
        for layer in self.model.quantizer.layers:
            cb = layer.codebook
            flat = residual.transpose(1, 2).reshape(-1, residual.shape[1])  # [B·T, D]
            if update and float(cb.cluster_size.sum()) == 0:  # first batch: codes from the data
                pick = torch.randint(len(flat), (cb.embed.shape[0],), device=flat.device)
                cb.embed.copy_(flat[pick])
                cb.embed_avg.copy_(flat[pick])
                cb.cluster_size.fill_(1.0)
            idx = cb.quantize(flat)
            q = F.embedding(idx, cb.embed)
            if update:
                onehot = F.one_hot(idx, cb.embed.shape[0]).type(flat.dtype)  # [B·T, V]
                cb.cluster_size.mul_(hp.ema_decay).add_(onehot.sum(0), alpha=1 - hp.ema_decay)
                cb.embed_avg.mul_(hp.ema_decay).add_(onehot.t() @ flat, alpha=1 - hp.ema_decay)
                n = cb.cluster_size.sum()
                size = (cb.cluster_size + 1e-5) / (n + cb.embed.shape[0] * 1e-5) * n  # Laplace smoothing
                cb.embed.copy_(cb.embed_avg / size[:, None])
                dead = cb.cluster_size < hp.dead_threshold
                if bool(dead.any()):
                    fresh = flat[torch.randint(len(flat), (int(dead.sum()),), device=flat.device)]
                    cb.embed[dead] = fresh
                    cb.embed_avg[dead] = fresh
                    cb.cluster_size[dead] = 1.0
            q = q.reshape(residual.shape[0], residual.shape[2], -1).transpose(1, 2)  # [B, D, T]
            codes.append(idx.reshape(residual.shape[0], -1))
            residual = residual - q
            quantized = quantized + q
        commit = F.mse_loss(z, quantized.detach())
        return z + (quantized - z).detach(), torch.stack(codes, 1), commit

    def forward(self, audio: torch.Tensor, update: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Audio ``[B, 1, N]`` → (reconstruction ``[B, 1, N]``, codes ``[B, K, N / hop]``, commitment)."""
        z = self.model.encoder(audio)
        q, codes, commit = self._quantize(z, update)
        return self.model.decoder(q)[..., :audio.shape[-1]], codes, commit

    def _losses(self, audio: torch.Tensor, update: bool) -> dict[str, torch.Tensor]:
        rec, _, commit = self(audio, update)
        l1 = (rec - audio).abs().mean()
        mel = multiscale_mel_loss(rec[:, 0], audio[:, 0], self.model.config.sampling_rate)
        hp = self.hparams
        total = hp.l1_weight * l1 + hp.mel_weight * mel + hp.commit_weight * commit
        return {"loss": total, "l1": l1, "mel": mel, "commit": commit}

    def _crop(self, audio: torch.Tensor) -> torch.Tensor:
        crop = self.hparams.crop
        if crop is None or crop >= audio.shape[-1]:
            return audio
        starts = torch.randint(0, (audio.shape[-1] - crop) // self.hop + 1, (audio.shape[0],)) * self.hop
        return torch.stack([a[:, s:s + crop] for a, s in zip(audio, starts.tolist(), strict=True)])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self._losses(self._crop(batch["media"].float()), update=True)
        for k, v in losses.items():
            self.log(f"train/{k}", v, prog_bar=k in ("loss", "mel"), batch_size=batch["media"].shape[0])
        return losses["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        audio = batch["media"].float()
        losses = self._losses(audio, update=False)
        rec = self(audio)[0]
        noise = (rec - audio).pow(2).sum(-1)
        snr = 10 * torch.log10(audio.pow(2).sum(-1) / noise.clamp_min(1e-10))
        for k, v in {**losses, "snr_db": snr.mean()}.items():
            self.log(f"val/{k}", v, prog_bar=k in ("mel", "snr_db"), batch_size=audio.shape[0])
        return losses["loss"]

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.hparams.lr, betas=(0.5, 0.9))

    @torch.no_grad()
    def stats(self, audio: torch.Tensor) -> dict[str, Any]:
        """Latent statistics of clips ``[N, 1, samples]`` and what the codec is (for the stats file)."""
        z = torch.cat([self.model.encoder(a) for a in audio.float().split(64)])
        return {**latent_stats(z), "codebooks": self.codebooks, "frame_rate": self.model.config.frame_rate,
                "bitrate_bps": self.codebooks * self.model.config.frame_rate
                * int(torch.tensor(self.model.config.codebook_size).log2())}

    def on_train_end(self) -> None:
        if self.hparams.export_to and self.trainer.is_global_zero:
            dm = self.trainer.datamodule
            audio = next(iter(dm.val_dataloader()))["media"] if dm is not None else None
            stats = self.stats(audio) if audio is not None else {}
            save_codec(self.model, self.hparams.export_to, stats)


def export_codec(checkpoint: str | Path, dest: str | Path, audio: torch.Tensor) -> Path:
    """A Lightning checkpoint of :class:`CodecModule` → a codec folder (``save_pretrained`` + latent
    statistics measured on ``audio`` ``[N, 1, samples]``)."""
    module = CodecModule.load_from_checkpoint(str(checkpoint), map_location="cpu").eval()
    return save_codec(module.model, dest, module.stats(audio))


def _check_codes(module: CodecModule, audio: torch.Tensor) -> bool:
    """Whether the module's quantiser and the inference path (:func:`rvq_encode`) agree (tests)."""
    with torch.no_grad():
        z = module.model.encoder(audio)
        _, codes, _ = module._quantize(z, update=False)
        return torch.equal(codes, rvq_encode(module.model, z, module.codebooks)) and torch.allclose(
            rvq_decode(module.model, codes), module._quantize(z, update=False)[0], atol=1e-5)
