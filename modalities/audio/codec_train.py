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
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from .codec import STATS_FILE, latent_stats
from .codec_parts import (
    data_init,
    from_first_process,
    kmeans,
    loud_crops,
    mean_over_processes,
    multiscale_mel_loss,
)

__all__ = ["CodecModule", "data_init", "export_codec", "kmeans", "loud_crops", "multiscale_mel_loss",
           "save_codec"]

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

    Training starts as a plain auto-encoder (the decoder reads the encoder's latents) for
    ``vq_warmup`` steps; then each residual codebook is initialised by k-means on the latents of
    the last warm-up batches (level by level, on the residuals) and the quantiser is switched on.
    Codebooks seeded from a fresh encoder's latents collapse: those latents barely depend on the
    input, every frame picks the same code, and the decoder learns one average sound.

    Args:
        config: ``EncodecConfig`` keyword arguments; the defaults give a 16-kHz mono codec with
            hop 320 (50 frames/s), 4 codebooks of 256 codes (1.6 kbit/s) and 64-d latents.
        crop: training crop length in samples (``None``: whole clips).
        loud_crops: draw crop positions by the energy inside them (:func:`loud_crops`), not uniformly.
        lr: Adam learning rate (β = 0.5, 0.9, as in EnCodec).
        l1_weight, mel_weight, commit_weight: loss weights (time-domain L1, multi-scale mel,
            commitment).
        floor_db, mag_weight: the mel loss's floor and linear-term weight (:func:`multiscale_mel_loss`).
        vq_warmup: auto-encoder steps before the quantiser is used; reservoir: latent frames kept
            from the last warm-up batches for the k-means initialisation.
        ema_decay: codebook EMA decay; dead_threshold: a code whose EMA count falls below it is
            restarted from a random residual of the batch.
        init_from_data: initialise the convolutions from the first batch (:func:`data_init`).
        export_to: a folder the trained codec is saved to (``save_pretrained``) when training ends.
    """

    def __init__(self, config: dict[str, Any] | None = None, crop: int | None = 6400,
                 loud_crops: bool = True, lr: float = 1e-3, l1_weight: float = 0.1, mel_weight: float = 1.0,
                 commit_weight: float = 1.0, floor_db: float = -60.0, mag_weight: float = 0.0,
                 vq_warmup: int = 200, reservoir: int = 4096, ema_decay: float = 0.99,
                 dead_threshold: float = 2.0, init_from_data: bool = True,
                 export_to: str | None = None) -> None:
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
        self._reservoir: list[torch.Tensor] = []  # latent frames [n, D] of the last warm-up batches
        self.register_buffer("initialised", torch.tensor(not init_from_data))  # data_init done (saved)

    # ------------------------------------------------------------------ processes (ddp_spawn, FSDP2)
    def __getstate__(self) -> dict[str, Any]:
        """Pickled (``ddp_spawn`` sends the module to its processes) as the codec's config and
        ``state_dict``: torch refuses to pickle the weight-norm parametrisations EnCodec is built of."""
        state = super().__getstate__()
        modules = dict(state["_modules"])
        model = modules.pop("model")
        state["_modules"] = modules
        state["_codec"] = (model.config, model.state_dict(), model.training)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        from transformers import EncodecModel

        config, weights, training = state.pop("_codec")
        super().__setstate__(state)
        model = EncodecModel(config)
        model.load_state_dict(weights)
        self.model = model.train(training)

    def configure_model(self) -> None:
        """Before training (every strategy; Lightning calls it in each process): the data-dependent
        initialisation (:func:`data_init`) on the first batch of the training order, the same clips
        and crops in every process, so the processes start from the same weights; then, under
        Lightning's ``ModelParallelStrategy`` (torch's FSDP2), ``fully_shard`` the encoder and the
        decoder over its data-parallel mesh (the codebooks are buffers, kept equal on every process
        by :meth:`_quantize`). Idempotent (Lightning may call it more than once)."""
        from torch.distributed.fsdp import FSDPModule, fully_shard

        from framework.training.module import data_parallel_mesh

        trainer = self._trainer
        dm = getattr(trainer, "datamodule", None)
        if (not bool(self.initialised) and dm is not None and trainer.state.fn == "fit"
                and not isinstance(self.model.encoder, FSDPModule)):
            audio = next(iter(dm.train_dataloader()))["media"].float().to(self.device)
            gen = torch.Generator(device=audio.device).manual_seed(0)
            crop = self.hparams.crop
            if crop is not None and crop < audio.shape[-1]:
                audio = loud_crops(audio, crop, self.hop, gen)
            data_init(self.model, audio)
            self.initialised.fill_(True)
        mesh = self.device_mesh
        if mesh is not None and not isinstance(self.model.encoder, FSDPModule):
            mesh = data_parallel_mesh(mesh)
            fully_shard(self.model.encoder, mesh=mesh)
            fully_shard(self.model.decoder, mesh=mesh)

    def whole_model(self):
        """The ``EncodecModel`` with whole weights: itself, or under FSDP2 a gathered copy (a
        collective: every process must call it)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        from torch.distributed.fsdp import FSDPModule
        from transformers import EncodecModel

        if not isinstance(self.model.encoder, FSDPModule):
            return self.model
        weights = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True,
                                                                             cpu_offload=True))
        model = EncodecModel(self.model.config)
        model.load_state_dict(weights)
        return model.eval()

    @property
    def codebooks(self) -> int:
        return len(self.model.quantizer.layers)

    @property
    def quantizer_ready(self) -> bool:
        """Whether the codebooks have been initialised (after the warm-up)."""
        return float(self.model.quantizer.layers[0].codebook.cluster_size.sum()) > 0

    def _keep(self, z: torch.Tensor) -> None:
        """Add latents ``[B, D, T]`` to the reservoir, keeping the newest ``reservoir`` frames."""
        self._reservoir.append(z.detach().transpose(1, 2).reshape(-1, z.shape[1]))
        while sum(len(r) for r in self._reservoir) - len(self._reservoir[0]) >= self.hparams.reservoir:
            self._reservoir.pop(0)

    @torch.no_grad()
    def init_codebooks(self, latents: torch.Tensor, iters: int = 10) -> None:
        """k-means of latent frames ``[N, D]`` into every codebook, level by level on the residuals."""
        residual = latents.detach()
        g = torch.Generator().manual_seed(0)
        for layer in self.model.quantizer.layers:
            cb = layer.codebook
            centroids, sizes = kmeans(residual, cb.embed.shape[0], iters, g)
            cb.embed.copy_(centroids)
            cb.cluster_size.copy_(sizes.clamp_min(1.0))
            cb.embed_avg.copy_(centroids * cb.cluster_size[:, None])
            residual = residual - F.embedding(cb.quantize(residual), cb.embed)
        for layer in self.model.quantizer.layers:  # several processes: all start from process 0's
            cb = layer.codebook
            from_first_process(cb.embed, cb.cluster_size, cb.embed_avg)
        self._reservoir = []

    def _quantize(self, z: torch.Tensor, update: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Latents ``[B, D, T]`` → (straight-through quantised ``[B, D, T]``, codes ``[B, K, T]``,
        commitment loss). With ``update``, codebooks move towards their assigned latents (EMA)."""
        residual, quantized, codes = z.detach(), torch.zeros_like(z), []
        hp = self.hparams
        if update and not self.quantizer_ready:
            self._keep(z)
            self.init_codebooks(torch.cat(self._reservoir))
        for layer in self.model.quantizer.layers:
            cb = layer.codebook
            flat = residual.transpose(1, 2).reshape(-1, residual.shape[1])  # [B·T, D]
            idx = cb.quantize(flat)
            q = F.embedding(idx, cb.embed)
            if update:
                onehot = F.one_hot(idx, cb.embed.shape[0]).type(flat.dtype)  # [B·T, V]
                # the global batch's statistics: every process then makes the same update
                counts, sums = mean_over_processes(onehot.sum(0)), mean_over_processes(onehot.t() @ flat)
                cb.cluster_size.mul_(hp.ema_decay).add_(counts, alpha=1 - hp.ema_decay)
                cb.embed_avg.mul_(hp.ema_decay).add_(sums, alpha=1 - hp.ema_decay)
                n = cb.cluster_size.sum()
                size = (cb.cluster_size + 1e-5) / (n + cb.embed.shape[0] * 1e-5) * n  # Laplace smoothing
                cb.embed.copy_(cb.embed_avg / size[:, None])
                dead = cb.cluster_size < hp.dead_threshold
                if bool(dead.any()):  # restart unused codes on residuals of this batch
                    fresh = flat[torch.randint(len(flat), (int(dead.sum()),), device=flat.device)]
                    cb.embed[dead] = fresh
                    cb.embed_avg[dead] = fresh * hp.dead_threshold
                    cb.cluster_size[dead] = hp.dead_threshold
                    from_first_process(cb.embed, cb.embed_avg)  # the same restarts on every process
            q = q.reshape(residual.shape[0], residual.shape[2], -1).transpose(1, 2)  # [B, D, T]
            codes.append(idx.reshape(residual.shape[0], -1))
            residual = residual - q
            quantized = quantized + q
        commit = F.mse_loss(z, quantized.detach())
        return z + (quantized - z).detach(), torch.stack(codes, 1), commit

    def forward(self, audio: torch.Tensor, update: bool = False, quantize: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Audio ``[B, 1, N]`` → (reconstruction ``[B, 1, N]``, codes ``[B, K, N / hop]`` or ``None``
        without ``quantize``, commitment loss)."""
        z = self.model.encoder(audio)
        if not quantize:
            return self.model.decoder(z)[..., :audio.shape[-1]], None, z.new_zeros(())
        q, codes, commit = self._quantize(z, update)
        return self.model.decoder(q)[..., :audio.shape[-1]], codes, commit

    def _losses(self, audio: torch.Tensor, update: bool, quantize: bool = True) -> dict[str, torch.Tensor]:
        """Loss terms of clips ``[B, 1, N]`` (no cropping): ``loss``, ``l1``, ``mel``, ``commit``."""
        rec, _, commit = self(audio, update, quantize)
        return self._loss_terms(rec, audio, commit)

    def train_losses(self, audio: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """The losses of one training step ``step`` on clips ``[B, 1, N]`` (cropped here): an
        auto-encoder step during the warm-up (its last latents kept for the k-means), then VQ."""
        audio = self._crop(audio.float())
        if not bool(self.initialised):
            data_init(self.model, audio)
            self.initialised.fill_(True)
        warm = self.hparams.vq_warmup
        if step < warm:
            z = self.model.encoder(audio)
            if step >= warm - math.ceil(self.hparams.reservoir / (z.shape[0] * z.shape[2])):
                self._keep(z)  # the last batches before the switch fill the reservoir
            rec = self.model.decoder(z)[..., :audio.shape[-1]]
            return self._loss_terms(rec, audio, z.new_zeros(()))
        return self._losses(audio, update=True)

    def _loss_terms(self, rec: torch.Tensor, audio: torch.Tensor,
                    commit: torch.Tensor) -> dict[str, torch.Tensor]:
        hp = self.hparams
        l1 = (rec - audio).abs().mean()
        mel = multiscale_mel_loss(rec[:, 0], audio[:, 0], self.model.config.sampling_rate,
                                  floor_db=hp.floor_db, mag_weight=hp.mag_weight)
        total = hp.l1_weight * l1 + hp.mel_weight * mel + hp.commit_weight * commit
        return {"loss": total, "l1": l1, "mel": mel, "commit": commit}

    def _crop(self, audio: torch.Tensor) -> torch.Tensor:
        crop = self.hparams.crop
        if crop is None or crop >= audio.shape[-1]:
            return audio
        if self.hparams.loud_crops:
            return loud_crops(audio, crop, self.hop)
        starts = torch.randint(0, (audio.shape[-1] - crop) // self.hop + 1, (audio.shape[0],)) * self.hop
        return torch.stack([a[:, s:s + crop] for a, s in zip(audio, starts.tolist(), strict=True)])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self.train_losses(batch["media"], self.global_step)
        for k, v in losses.items():
            self.log(f"train/{k}", v, prog_bar=k in ("loss", "mel"), batch_size=batch["media"].shape[0])
        return losses["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        audio = batch["media"].float()
        ready = self.quantizer_ready  # during the warm-up: the auto-encoder
        losses = self._losses(audio, update=False, quantize=ready)
        rec = self(audio, quantize=ready)[0]
        noise = (rec - audio).pow(2).sum(-1)
        snr = 10 * torch.log10(audio.pow(2).sum(-1) / noise.clamp_min(1e-10))
        for k, v in {**losses, "snr_db": snr.mean()}.items():
            self.log(f"val/{k}", v, prog_bar=k in ("mel", "snr_db"), batch_size=audio.shape[0])
        return losses["loss"]

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.hparams.lr, betas=(0.5, 0.9))

    @torch.no_grad()
    def stats(self, audio: torch.Tensor, model=None) -> dict[str, Any]:
        """Latent statistics of clips ``[N, 1, samples]`` and what the codec is (for the stats file),
        by ``model`` (default: this module's ``EncodecModel``)."""
        model = self.model if model is None else model
        z = torch.cat([model.encoder(a.to(next(model.parameters()).device)) for a in audio.float().split(64)])
        return {**latent_stats(z), "codebooks": self.codebooks, "frame_rate": self.model.config.frame_rate,
                "bitrate_bps": self.codebooks * self.model.config.frame_rate
                * int(torch.tensor(self.model.config.codebook_size).log2())}

    def on_train_end(self) -> None:
        if not self.hparams.export_to:
            return
        model = self.whole_model()  # every process (a collective under FSDP2); process 0 saves it
        if self.trainer.is_global_zero:
            dm = self.trainer.datamodule
            audio = next(iter(dm.val_dataloader()))["media"] if dm is not None else None
            stats = self.stats(audio, model) if audio is not None else {}
            save_codec(model, self.hparams.export_to, stats)


def export_codec(checkpoint: str | Path, dest: str | Path, audio: torch.Tensor) -> Path:
    """A Lightning checkpoint of :class:`CodecModule` → a codec folder (``save_pretrained`` + latent
    statistics measured on ``audio`` ``[N, 1, samples]``)."""
    module = CodecModule.load_from_checkpoint(str(checkpoint), map_location="cpu").eval()
    return save_codec(module.model, dest, module.stats(audio))
