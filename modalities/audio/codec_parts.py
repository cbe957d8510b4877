"""The pieces of the EnCodec recipe that the codec's training module uses, each usable alone: the
multi-scale log-mel loss, loud training crops, data-dependent initialisation of the convolutions,
k-means codebook initialisation, and the two ways codebook statistics are kept equal on every
process (averaged, or copied from process 0).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from .mel import mel_filters

__all__ = ["MEL_SCALES", "data_init", "from_first_process", "kmeans", "loud_crops", "mean_over_processes",
           "multiscale_mel_loss", "world_size"]


MEL_SCALES = (256, 512, 1024, 2048)


def multiscale_mel_loss(estimate: torch.Tensor, target: torch.Tensor, sample_rate: int,
                        scales: tuple[int, ...] = MEL_SCALES, floor_db: float = -60.0,
                        mag_weight: float = 0.0) -> torch.Tensor:
    """Multi-scale mel loss of audio ``[B, N]``: mean over STFT sizes ``n`` (hop ``n/4``,
    ``min(64, n/8)`` mel bands) of ``|dB(â) − dB(a)| / 10 + mag_weight · |m(â) − m(a)| / mean m(a)``.

    ``m(x)`` is the mel power of the STFT normalised by the window's sum (``n``-independent; a
    full-scale sine peaks near 0 dB, loud speech near −15 dB), ``dB(x) = 10·log10(m(x) + 10^(floor_db/10))``.
    The floor is added rather than clamped so every output gets a gradient; at −60 dB it sits
    below the consonants (which carry the words) but far above the clips' digital silence, whose
    exact reproduction would otherwise dominate the loss. The optional linear term (relative to the
    target's mean) weighs the loud parts; in short runs it slowed the escape from the initial
    plateau, so the recipe leaves it off.
    """
    eps = 10 ** (floor_db / 10)
    losses = []
    for n in scales:
        fb = mel_filters(n, min(64, n // 8), sample_rate).to(target.device)
        window = torch.hann_window(n, device=target.device)
        mels = []
        for x in (estimate, target):
            spec = torch.stft(x, n, n // 4, window=window, center=True, return_complex=True) / window.sum()
            mels.append((spec.real.square() + spec.imag.square()).transpose(1, 2) @ fb)  # [B, frames, bands]
        est, ref = mels
        log_term = (10 * torch.log10(est + eps) - 10 * torch.log10(ref + eps)).abs().mean() / 10
        mag_term = (est - ref).abs().mean() / ref.mean().clamp_min(eps)
        losses.append(log_term + mag_weight * mag_term)
    return torch.stack(losses).mean()


def loud_crops(audio: torch.Tensor, crop: int, hop: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Crops ``[B, 1, crop]`` of clips ``[B, 1, N]`` whose starts (multiples of ``hop``) are drawn
    with probability proportional to the energy inside the crop.

    The spoken words fill about 0.4 s of each 1-s clip and the rest is digital silence: uniform
    crops are often silent, and a codec trained on them learns that silence is a cheap answer.
    """
    B, _, N = audio.shape
    starts = torch.arange(0, N - crop + 1, hop, device=audio.device)  # [S]
    power = audio[:, 0].square().cumsum(-1)
    power = torch.cat([power.new_zeros(B, 1), power], -1)
    energy = power[:, starts + crop] - power[:, starts]  # [B, S]: energy of each candidate crop
    probs = energy + 1e-12 * crop  # an all-silent clip: uniform
    pick = torch.multinomial(probs / probs.sum(-1, keepdim=True), 1, generator=generator)[:, 0]
    idx = starts[pick][:, None] + torch.arange(crop, device=audio.device)  # [B, crop]
    return audio[:, 0].gather(1, idx)[:, None]


@torch.no_grad()
def data_init(model, audio: torch.Tensor, out_std: float | None = None) -> None:
    """Data-dependent initialisation of an ``EncodecModel``'s convolutions (Salimans & Kingma 2016,
    the initialisation their weight normalisation comes with) on clips ``[B, 1, N]``.

    In one forward pass through encoder and decoder, each convolution's output is standardised
    (zero mean and unit variance per channel over batch and time) by rescaling its weight-norm
    gain and setting its bias; the decoder's last layer is scaled to ``out_std`` (default: the
    clips' standard deviation). transformers' default initialisation attenuates the signal about
    a hundredfold through the encoder (and again through the decoder), so a fresh codec's latents
    are its biases and its output a constant: training then sits on a long plateau.
    """
    convs = [m for m in [*model.encoder.modules(), *model.decoder.modules()]
             if isinstance(m, torch.nn.Conv1d | torch.nn.ConvTranspose1d)]
    last = convs[-1]
    target = float(audio.std()) if out_std is None else out_std

    def hook(conv, _inputs, out):
        mean, std = out.mean((0, 2)), out.std((0, 2)).clamp_min(1e-8)
        if conv is last:
            std = std / target
        g = conv.parametrizations.weight.original0 if hasattr(conv, "parametrizations") else None
        if g is not None and g.shape[0] == out.shape[1]:  # a gain per output channel (Conv1d)
            g.div_(std.view(-1, *([1] * (g.ndim - 1))))
            scale = std
        else:  # a transposed convolution's gain is per input channel: one scalar for the layer
            scale = std.mean().expand_as(std)
            if g is not None:
                g.div_(scale[0])
            else:
                conv.weight.div_(scale[0])
        conv.bias.copy_((conv.bias - mean) / scale)
        return (out - mean[None, :, None]) / scale[None, :, None]

    handles = [c.register_forward_hook(hook) for c in convs]
    try:
        model.decoder(model.encoder(audio))
    finally:
        for h in handles:
            h.remove()


def kmeans(points: torch.Tensor, k: int, iters: int = 10,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means of ``points [N, D]`` seeded by k-means++ (Arthur & Vassilvitskii 2007):
    (centroids ``[k, D]``, cluster sizes ``[k]``). An empty cluster keeps its centroid."""
    n = len(points)
    centroids = points[torch.randint(n, (1,), generator=generator)]
    d2 = torch.cdist(points, centroids).square()[:, 0]
    for _ in range(k - 1):  # each next seed drawn with probability ∝ squared distance to the nearest
        w = d2 if float(d2.sum()) > 0 else torch.ones_like(d2)
        nxt = points[torch.multinomial(w / w.sum(), 1, generator=generator)]
        centroids = torch.cat([centroids, nxt])
        d2 = torch.minimum(d2, (points - nxt).square().sum(-1))
    sizes = torch.zeros(k, dtype=points.dtype, device=points.device)
    for _ in range(iters):
        idx = torch.cdist(points, centroids).argmin(-1)
        sizes = torch.bincount(idx, minlength=k).to(points.dtype)
        sums = torch.zeros_like(centroids).index_add_(0, idx, points)
        full = sizes > 0
        centroids[full] = sums[full] / sizes[full, None]
    return centroids, sizes


def world_size() -> int:
    """Processes training together (1 outside ``torch.distributed``)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def mean_over_processes(t: torch.Tensor) -> torch.Tensor:
    """``t`` averaged over every process (in place; ``t`` itself with one process)."""
    if world_size() > 1:
        dist.all_reduce(t)
        t.div_(world_size())
    return t


def from_first_process(*buffers: torch.Tensor) -> None:
    """Overwrite ``buffers`` (in place) with process 0's values (nothing with one process)."""
    if world_size() > 1:
        for b in buffers:
            dist.broadcast(b, 0)
