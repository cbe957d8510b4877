"""Spoken digits rendered by eSpeak NG (in the spirit of the SC09 spoken-digit benchmark).

The eSpeak NG library and its voice data ship inside the ``espeakng-loader`` wheel; we call the
C API through :mod:`ctypes` (synchronous synthesis into a callback), so no system package is
needed. Each clip is one word, ``zero`` … ``nine``, spoken by one of :data:`SPEAKERS` (eSpeak
voice + variant combinations) with jittered pitch, rate, gain and onset, placed in a 1-s window
at 16 kHz. Everything about clip ``i`` of a set is drawn from ``numpy.random.default_rng([seed,
i])``, and clips are rendered in fixed chunks by fresh processes (see :func:`render_words`), so
clip ``i`` is a function of ``(seed, i)``.

Rendering is fast (about 2 ms a clip), but a training run would repeat it every epoch, so sets are
cached as ``.npz`` files (int16 audio + labels), written atomically.
"""

from __future__ import annotations

import ctypes
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from framework.core.atomic import atomic_write

__all__ = ["PITCHES", "SAMPLE_RATE", "SPEAKERS", "WORDS", "WordClips", "load_words", "render_clip",
           "render_words", "synthesize"]

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: eSpeak voice names (``language+variant``): American and British English, Scottish and
#: Caribbean English, and the female (f1–f4) and male (m1–m7) variants.
SPEAKERS = ("en-us", "en", "en-gb-scotland", "en-029", "en-us+f1", "en-us+f2", "en+f3", "en+f4",
            "en-us+m1", "en-us+m2", "en+m3", "en+m4", "en-us+m5", "en+m6", "en-us+m7")
#: bins of eSpeak's pitch parameter (0–100, 50 = the voice's own), drawn uniformly in 20–80.
PITCHES = ("low", "mid", "high")
PITCH_EDGES = (20, 40, 60, 80)
SAMPLE_RATE = 16_000
ESPEAK_RATE = 22_050  # eSpeak NG's output rate
CLIP_SECONDS = 1.0
RATE_WPM = (130, 210)  # speaking rate jitter (words per minute; eSpeak's default is 175)
FORMAT_VERSION = 1  # bump when rendering changes, so old caches are not reused

_lock = threading.Lock()  # eSpeak keeps global state: one synthesis at a time


class _ESpeak:
    """The eSpeak NG shared library from ``espeakng-loader``, initialised for synchronous output."""

    _instance: _ESpeak | None = None
    _CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:  # the audio extra is not installed
            raise ImportError("spoken words need eSpeak NG from the 'espeakng-loader' package: "
                              "pip install 'polyguide[audio]'") from e
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        rate = lib.espeak_Initialize(2, 0, espeakng_loader.get_data_path().encode(), 0)  # 2: SYNCHRONOUS
        if rate != ESPEAK_RATE:
            raise RuntimeError(f"eSpeak NG failed to initialise (returned {rate}, expected {ESPEAK_RATE} Hz)")
        self.lib, self._chunks = lib, []
        self._libc = ctypes.CDLL(None)
        self._cb = self._CALLBACK(self._collect)  # kept referenced: eSpeak calls it
        lib.espeak_SetSynthCallback(self._cb)

    def _collect(self, wav, n: int, events) -> int:
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0: continue synthesis

    @classmethod
    def get(cls) -> _ESpeak:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def synth(self, text: str, voice: str, rate: int, pitch: int, seed: int = 0) -> np.ndarray:
        """``text`` spoken by ``voice`` → int16 samples ``[n]`` at 22,050 Hz; ``seed`` fixes the
        noise eSpeak draws (aspiration, jitter), so the same call gives the same samples."""
        lib = self.lib
        lib.espeak_ng_SetRandSeed(int(seed))
        self._libc.srand(int(seed) & 0x7FFFFFFF)  # a few older code paths still call rand()
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"eSpeak NG has no voice {voice!r}")
        lib.espeak_SetParameter(1, int(rate), 0)  # espeakRATE (words per minute)
        lib.espeak_SetParameter(3, int(pitch), 0)  # espeakPITCH (0-100)
        self._chunks = []
        data = text.encode() + b"\0"
        err = lib.espeak_Synth(data, len(data), 0, 1, 0, 1, None, None)  # POS_CHARACTER, espeakCHARS_UTF8
        lib.espeak_Synchronize()
        if err != 0:
            raise RuntimeError(f"eSpeak NG failed to speak {text!r} with {voice!r} (error {err})")
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)


def synthesize(text: str, voice: str, rate: int = 175, pitch: int = 50) -> np.ndarray:
    """``text`` spoken by an eSpeak ``voice`` → float32 samples ``[n]`` in ``[−1, 1]`` at 16 kHz."""
    from scipy.signal import resample_poly

    with _lock:
        raw = _ESpeak.get().synth(text, voice, rate, pitch)
    return resample_poly(raw.astype(np.float32) / 32768.0, 320, 441).astype(np.float32)  # 22050 → 16000


def _trim(x: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    """Drop the leading and trailing silence eSpeak adds (samples below ``threshold`` of the peak)."""
    loud = np.flatnonzero(np.abs(x) > threshold * max(np.abs(x).max(), 1e-9))
    return x[loud[0]:loud[-1] + 1] if len(loud) else x


def render_clip(word: int, speaker: int, pitch: int, rate: int, gain: float, onset: float) -> np.ndarray:
    """One clip ``[16000]`` float32: ``WORDS[word]`` by ``SPEAKERS[speaker]`` at eSpeak pitch ``pitch``
    (0–100) and ``rate`` words/min, peak ``gain``, starting at ``onset`` ∈ [0, 1] of the free room."""
    n = int(SAMPLE_RATE * CLIP_SECONDS)
    x = _trim(synthesize(WORDS[word], SPEAKERS[speaker], rate, pitch))[:n]
    x = x * (gain / max(float(np.abs(x).max()), 1e-9))
    out = np.zeros(n, np.float32)
    start = round(onset * (n - len(x)))
    out[start:start + len(x)] = x
    return out


@dataclass
class WordClips:
    """A set of clips: ``audio`` ``[N, 1, 16000]`` float32 in ``[−1, 1]`` and label indices ``[N]``
    (``word`` into :data:`WORDS`, ``speaker`` into :data:`SPEAKERS`, ``pitch`` into :data:`PITCHES`)."""

    audio: torch.Tensor
    word: torch.Tensor
    speaker: torch.Tensor
    pitch: torch.Tensor

    def __len__(self) -> int:
        return self.audio.shape[0]

    def conditions(self) -> dict[str, torch.Tensor]:
        return {"word": self.word, "speaker": self.speaker, "pitch": self.pitch}


def _draw(seed: int, i: int) -> tuple[int, int, int, int, float, float]:
    """Clip ``i``'s (word, speaker, eSpeak pitch, rate, gain, onset), from its own random stream."""
    rng = np.random.default_rng([seed, i])
    word, speaker = int(rng.integers(len(WORDS))), int(rng.integers(len(SPEAKERS)))
    pitch = int(rng.integers(PITCH_EDGES[0], PITCH_EDGES[-1] + 1))
    rate = int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1))
    return word, speaker, pitch, rate, float(rng.uniform(0.4, 0.9)), float(rng.uniform(0.1, 0.9))


def pitch_bin(pitch: int) -> int:
    """eSpeak pitch 20–80 → index into :data:`PITCHES` (low < 40 ≤ mid < 60 ≤ high)."""
    return int(np.searchsorted(PITCH_EDGES[1:-1], pitch, side="right"))


CHUNK = 256  # clips rendered per fresh process


def _render_chunk(seed: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Clips ``start … stop − 1`` of the set ``seed``, in this process: int16 audio ``[m, 16000]``
    and labels ``[m, 3]`` (word, speaker, pitch bin)."""
    audio = np.zeros((stop - start, int(SAMPLE_RATE * CLIP_SECONDS)), np.int16)
    labels = np.zeros((stop - start, 3), np.int64)
    for j, i in enumerate(range(start, stop)):
        word, speaker, pitch, rate, gain, onset = _draw(seed, i)
        audio[j] = np.round(render_clip(word, speaker, pitch, rate, gain, onset) * 32767.0)
        labels[j] = word, speaker, pitch_bin(pitch)
    return audio, labels


def _render_fresh(seed: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_render_chunk, seed, start, stop).result()


def render_words(n: int, seed: int = 0, workers: int = 2) -> WordClips:
    """Render the first ``n`` clips of the set ``seed`` (no cache).

    eSpeak NG keeps synthesis state across utterances (voice "flutter" and pitch phases carry
    over; re-initialising the library does not reset them), so a clip's samples depend on what
    the process spoke before. Clips are therefore rendered in chunks of :data:`CHUNK`, each in a
    freshly started process (``workers`` at a time): clip ``i`` depends only on ``(seed, i)``,
    and a smaller set is a prefix of a larger one. Audio is quantised to 16 bits, as cached.
    """
    from concurrent.futures import ThreadPoolExecutor

    if n < 1:
        raise ValueError(f"a clip set needs n ≥ 1 clips, got {n}")
    bounds = [(s, min(s + CHUNK, n)) for s in range(0, n, CHUNK)]
    from tqdm.auto import tqdm

    with ThreadPoolExecutor(max(1, min(workers, len(bounds)))) as threads:  # first use: minutes, so a bar
        parts = list(tqdm(threads.map(lambda b: _render_fresh(int(seed), *b), bounds), total=len(bounds),
                          desc=f"rendering {n} word clips (once, then cached)", unit="chunk", disable=None))
    audio = np.concatenate([p[0] for p in parts])
    lab = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return WordClips(torch.from_numpy(audio.astype(np.float32) / 32767.0)[:, None],
                     lab[:, 0].clone(), lab[:, 1].clone(), lab[:, 2].clone())


def default_cache_dir() -> Path:
    """``~/.cache/polyguide/audio``: where rendered sets are kept."""
    return Path.home() / ".cache" / "polyguide" / "audio"


def load_words(n: int, seed: int = 0, cache_dir: str | Path | None = None) -> WordClips:
    """The set of ``n`` clips with ``seed``, rendered once and cached as ``words-<key>.npz``.

    The cache holds int16 audio (``round(x · 32767)``) and the labels; the key covers ``n``,
    ``seed``, the renderer's version and the speaker/word lists, so a changed renderer re-renders.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = hashlib.sha1(repr((FORMAT_VERSION, n, seed, WORDS, SPEAKERS, PITCH_EDGES, RATE_WPM)).encode())
    path = cache / f"words-{key.hexdigest()[:12]}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                audio = torch.from_numpy(f["audio"].astype(np.float32) / 32767.0)[:, None]
                labels = (torch.from_numpy(f[k]).long() for k in ("word", "speaker", "pitch"))
                return WordClips(audio, *labels)
        except (OSError, KeyError, ValueError) as e:
            raise ValueError(f"the cached clip set {path} is unreadable ({e}); delete it to re-render") from e
    clips = render_words(n, seed)
    pcm = (clips.audio[:, 0].numpy() * 32767.0).round().astype(np.int16)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append '.npz' to a bare name
            np.savez(f, audio=pcm, word=clips.word.numpy(), speaker=clips.speaker.numpy(),
                     pitch=clips.pitch.numpy())

    atomic_write(path, write)
    return clips
