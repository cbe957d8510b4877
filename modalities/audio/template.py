"""An independent word check: dynamic time warping of MFCCs against real eSpeak renders.

The project's judge is a CNN trained on real renders; this check shares nothing with it — no
training at all. Each clip's MFCCs (``librosa.feature.mfcc``, 13 coefficients, 25-ms windows,
10-ms hop, cepstral mean removed) over its loud frames (within 35 dB of its loudest) are
aligned by dynamic time warping (``librosa.sequence.dtw``, Euclidean frame cost) with every
reference clip, real renders of the ten words by all speakers from a render seed that neither
the models nor the judge use. The word whose ``k`` nearest references have the smallest mean
path-normalised cost is the answer. It only hears *which word* is spoken, so decoder artefacts
that do not change the word's spectral sequence do not change its answer; its own accuracy on
real clips and on real clips through each decoder is reported beside the models' figures.
"""

from __future__ import annotations

import numpy as np
import torch

from .features import SAMPLE_RATE, as_mono

__all__ = ["TemplateMatcher", "mfcc_sequence"]


def mfcc_sequence(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, loud_db: float = 35.0) -> np.ndarray:
    """MFCCs ``[13, frames]`` of one clip ``[T]`` over its loud frames, cepstral mean removed."""
    import librosa

    x = np.asarray(wave, dtype=np.float32).reshape(-1)
    m = librosa.feature.mfcc(y=x, sr=sample_rate, n_mfcc=13, n_fft=400, hop_length=160, n_mels=40)
    rms = librosa.feature.rms(y=x, frame_length=400, hop_length=160)[0][: m.shape[1]]
    db = 20 * np.log10(np.maximum(rms, 1e-8))
    loud = np.flatnonzero(db > db.max() - loud_db)
    m = m[:, loud[0]:loud[-1] + 1] if len(loud) else m[:, :1]
    return m - m.mean(1, keepdims=True)


class TemplateMatcher:
    """Nearest-template word recognition by DTW over MFCCs.

    Args:
        references: real clips ``[N, (1,) T]``.
        labels: their word ids ``[N]``.
        k: references averaged per word (the ``k`` cheapest alignments).
    """

    def __init__(self, references: torch.Tensor, labels: torch.Tensor, k: int = 3) -> None:
        self.refs = [mfcc_sequence(w) for w in as_mono(references).numpy()]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.k = int(k)
        self.words = np.unique(self.labels)

    def costs(self, wave: np.ndarray) -> np.ndarray:
        """Per word, the mean of its ``k`` cheapest path-normalised DTW costs ``[n_words]``."""
        import librosa

        q = mfcc_sequence(wave)
        cost = np.empty(len(self.refs))
        for i, r in enumerate(self.refs):
            acc, path = librosa.sequence.dtw(X=q, Y=r, metric="euclidean")
            cost[i] = acc[-1, -1] / len(path)
        return np.array([np.sort(cost[self.labels == w])[: self.k].mean() for w in self.words])

    def predict(self, media: torch.Tensor) -> torch.Tensor:
        """Word ids ``[B]`` heard in audio ``[B, (1,) T]``."""
        return torch.tensor([int(self.words[self.costs(w).argmin()]) for w in as_mono(media).numpy()])
