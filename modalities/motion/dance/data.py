"""Dance data: music rendered by the audio plugin's pipeline and a dance on its score's beats.

Each clip takes a real melody (music21 corpus, :func:`modalities.audio.music.load_melodies`) of
one style, starts on a beat, plays at a tempo of 70–150 quarter notes a minute on one of the GM
instruments and is rendered with the SoundFont (:func:`modalities.audio.music.render`). Its beats
are the score's quarter-note grid — computed from the notes' onsets, never estimated from the
audio. A dance in the style's vocabulary (:mod:`.moves`) is built on those beats, with bigger
moves at faster tempi.

Batches are ``{"media": [B, 64, 22, 3], "conditions": {...}}`` with ``music`` (the clip's
``audio/music`` features ``[B, 64, 17]``: onset, beat, tempo, chroma at 20 fps), ``text`` (a
caption such as "an energetic dance with stepping side to side and clapping", MiniLM ``[B, 384]``)
and ``style`` (the music's style, a label).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import StackDataset

from framework.core.atomic import atomic_write
from framework.core.conditions import Conditions, ConditionSpec
from framework.core.plugins import api
from framework.training.data import SplitData

from ..actions import FPS, FRAMES
from ..clips import caption_embeddings
from .moves import STYLES, random_dance

__all__ = ["ENERGY", "DanceData", "caption", "dance_specs", "generate_dances", "score_beats"]

DEFAULT_CACHE = Path.home() / ".cache" / "polyguide" / "dance"
DATA_VERSION = "v2"  # v2: the music starts at a random point of a beat
BPM = (70.0, 150.0)
INSTRUMENTS = ("piano", "organ", "guitar", "violin", "trumpet", "flute")
ENERGY = ("calm", "lively", "energetic")
MAX_BEATS = 16
CONDITIONS = ("music", "text", "style")
_LEG = {"bounce": "bouncing", "step_touch": "stepping side to side", "march": "marching in place",
        "turn": "turning around"}
_ARM = {"arm_swing": "swinging the arms", "arms_up": "raising the arms", "clap": "clapping",
        "punch_up": "punching up"}
_TEMPLATES = ("{energy} dance", "a {energy} dance with {leg} and {arm}", "someone dances, {leg} and {arm}",
              "a {energy} dance: {leg}, {arm}")


def dance_specs(names: Sequence[str] = CONDITIONS) -> dict[str, ConditionSpec]:
    """Condition specs of the dance data: ``music`` declares the audio plugin's ``audio/music``
    encoder (a cross-modal condition), ``text`` the core MiniLM, ``style`` the music styles."""
    specs = {"music": ConditionSpec("music", kind="sequence", dim=api("audio/music_dim"),
                                    encoder="audio/music", positions=True),
             "text": ConditionSpec("text", kind="vector", dim=384, encoder="minilm"),
             "style": ConditionSpec("style", labels=STYLES)}
    unknown = set(names) - set(specs)
    if unknown:
        raise ValueError(f"unknown dance conditions {sorted(unknown)}; choose from {sorted(specs)}")
    return {n: specs[n] for n in names}


def caption(energy: int, moves: list[tuple[str, str]], variant: int) -> str:
    """A caption of a dance, e.g. ``"a lively dance with bouncing and clapping"``."""
    leg, arm = _LEG[moves[0][0]], _ARM[moves[0][1]]
    if moves[1] != moves[0]:
        leg = f"{leg} then {_LEG[moves[1][0]]}" if moves[1][0] != moves[0][0] else leg
        arm = f"{arm} then {_ARM[moves[1][1]]}" if moves[1][1] != moves[0][1] else arm
    return _TEMPLATES[variant % len(_TEMPLATES)].format(energy=ENERGY[energy], leg=leg, arm=arm)


def score_beats(notes: np.ndarray) -> float:
    """The score's beat grid offset (quarter notes, in [0, 1)) of a melody ``[n, 3]``: the quarter
    fraction on which the most note time starts (long notes weigh more), so a pickup bar that
    shifts the grid is followed."""
    frac = np.round(np.mod(notes[:, 0], 1.0) * 4) / 4 % 1.0
    candidates = np.arange(4) / 4
    weight = [float(notes[np.isclose(frac, c), 1].sum()) for c in candidates]
    return float(candidates[int(np.argmax(weight))])


def _music_clip(mel, m: int, bpm: float, instrument: str, seconds: float, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, float]:
    """Render melody ``m`` from a note on a beat, delayed by a random fraction of a beat (so the
    first beat is not always at 0): wave ``[seconds · 16 kHz]``, beat times (s), period (s)."""
    clip_notes, render = api("audio/clip_notes"), api("audio/render")
    notes = mel.melody(m)
    grid = score_beats(notes)
    phase = np.mod(notes[:, 0] - grid, 1.0)
    on_beat = np.isclose(phase, 0.0) | np.isclose(phase, 1.0)
    end = float(notes[-1, 0] + notes[-1, 1])
    room = end - notes[:, 0] >= seconds * bpm / 60 + 0.5  # no wrap inside the clip: the grid holds
    ok = np.flatnonzero(on_beat & room)
    start = int(rng.choice(ok)) if len(ok) else int(np.flatnonzero(on_beat)[0]) if on_beat.any() else 0
    period = 60.0 / bpm
    offset = (grid - float(notes[start, 0])) % 1.0  # quarters from the first note to the first beat
    delay = float(rng.uniform(0, period))
    beats = delay + (offset + np.arange(0, seconds / period + 1)) * period
    timed = [(o + delay, d, k) for o, d, k in clip_notes(notes, start, bpm, instrument, seconds)]
    wave = render([x for x in timed if x[0] < seconds], instrument, seconds)
    return wave, beats[beats < seconds].astype(np.float32), period


PER_STYLE = 40  # melodies parsed per style (the corpus parse is the slow part of a first run)


def generate_dances(n: int, seed: int, *, val: bool = False, per_style: int = PER_STYLE,
                    melody_cache: Path | None = None, melodies=None) -> dict[str, np.ndarray]:
    """``n`` dance clips from seed ``seed``: ``positions`` ``[n, 64, 22, 3]``, ``music`` features
    ``[n, 64, 17]``, ``wave`` int16 ``[n, 51200]`` (validation clips only), ``beats`` ``[n, 16]``
    (seconds, NaN-padded),
    ``period``/``bpm`` ``[n]``, ``style``/``energy``/``instrument`` ids ``[n]``, ``caption`` and
    ``moves`` strings ``[n]``. Validation clips (``val``) use melodies no training clip uses.
    ``melodies`` (a :class:`~modalities.audio.music.Melodies`) replaces the corpus (tests)."""
    music_features = api("audio/music_features")
    mel = melodies if melodies is not None else api("audio/load_melodies")(per_style, melody_cache)
    pool = api("audio/split_melodies")(mel, val)
    seconds = FRAMES / FPS
    rng = np.random.default_rng(seed)
    styles = rng.permutation(np.arange(n) % len(STYLES))
    out: dict[str, list] = {k: [] for k in ("positions", "wave", "beats", "period", "bpm", "style", "energy",
                                            "instrument", "caption", "moves")}
    for i in range(n):
        style = STYLES[styles[i]]
        m = int(rng.choice(pool[mel.style[pool] == styles[i]]))
        bpm = float(rng.uniform(*BPM))
        inst = INSTRUMENTS[rng.integers(len(INSTRUMENTS))]
        wave, beats, period = _music_clip(mel, m, bpm, inst, seconds, rng)
        energy = (bpm - BPM[0]) / (BPM[1] - BPM[0])
        dance = random_dance(style, beats, period, energy, rng)
        e_bin = min(int(energy * len(ENERGY)), len(ENERGY) - 1)
        padded = np.full(MAX_BEATS, np.nan, dtype=np.float32)
        padded[:len(beats)] = beats[:MAX_BEATS]
        out["positions"].append(dance.positions.numpy())
        out["wave"].append((np.clip(wave, -1, 1) * 32767).round().astype(np.int16))
        out["beats"].append(padded)
        out["period"].append(period)
        out["bpm"].append(bpm)
        out["style"].append(int(styles[i]))
        out["energy"].append(e_bin)
        out["instrument"].append(INSTRUMENTS.index(inst))
        out["caption"].append(caption(e_bin, dance.moves, int(rng.integers(len(_TEMPLATES)))))
        out["moves"].append(";".join(f"{a},{b}" for a, b in dance.moves))
    arrays = {k: np.asarray(v) for k, v in out.items()}
    arrays["positions"] = arrays["positions"].astype(np.float32)
    feats = [music_features(torch.from_numpy(arrays["wave"][i:i + 256].astype(np.float32) / 32767))
             for i in range(0, n, 256)]
    arrays["music"] = torch.cat(feats).numpy().astype(np.float32)
    if not val:  # 100 kB a clip: only validation clips keep their audio (mismatch tests, players)
        del arrays["wave"]
    return arrays


def load_or_generate(n: int, seed: int, val: bool, cache_dir: Path | None) -> dict[str, np.ndarray]:
    """:func:`generate_dances`, cached as ``cache_dir/dances-<version>-<n>-<seed>-<split>.npz`` (atomic)."""
    if cache_dir is None:
        return generate_dances(n, seed, val=val)
    path = Path(cache_dir) / f"dances-{DATA_VERSION}-{n}-{seed}-{'val' if val else 'train'}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    data = generate_dances(n, seed, val=val)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **data)

    atomic_write(path, write)
    return data


CHUNK = 200  # clips per cached file: a split is generated (and can be generated in parallel) in chunks


def load_split(n: int, seed: int, val: bool, cache_dir: Path | None) -> dict[str, np.ndarray]:
    """``n`` clips of a split: chunks of :data:`CHUNK` clips (chunk ``c`` from seed
    ``seed + 1000 · c``, each cached by :func:`load_or_generate`), concatenated."""
    parts = [load_or_generate(min(CHUNK, n - i), seed + 1000 * (i // CHUNK), val, cache_dir)
             for i in range(0, n, CHUNK)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def beat_lists(beats: np.ndarray) -> list[np.ndarray]:
    """NaN-padded beat rows ``[n, K]`` → ``n`` arrays of beat times."""
    return [row[~np.isnan(row)] for row in beats]


class DanceData(SplitData):
    """Procedural dance clips with their music.

    Args:
        conditions: which conditions batches carry (of ``music``, ``text``, ``style``).
        n_train, n_val: split sizes (seeds ``seed`` and ``seed + 1``; validation on held-out melodies).
        batch_size: training batch size.
        cache_dir: where generated clips are cached (``None``: no cache).
    """

    def __init__(self, conditions: Sequence[str] = CONDITIONS, n_train: int = 800, n_val: int = 128,
                 batch_size: int = 64, seed: int = 0, cache_dir: str | None = str(DEFAULT_CACHE)) -> None:
        super().__init__(batch_size, seed)
        self.names = tuple(conditions)
        self.specs = dance_specs(self.names)
        self.n_train, self.n_val = n_train, n_val
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.raw: dict[str, dict[str, np.ndarray]] = {}

    def _split(self, n: int, seed: int, val: bool) -> StackDataset:
        data = load_split(n, seed, val, self.cache_dir)
        self.raw["val" if val else "train"] = data
        conds: dict[str, torch.Tensor] = {}
        if "music" in self.names:
            conds["music"] = torch.from_numpy(data["music"])
        if "text" in self.names:
            conds["text"] = caption_embeddings(data["caption"], self.cache_dir and self.cache_dir / (
                f"minilm-{DATA_VERSION}-{n}-{seed}-{'val' if val else 'train'}.npy"))
        if "style" in self.names:
            conds["style"] = torch.from_numpy(data["style"]).long()
        return StackDataset(media=torch.from_numpy(data["positions"]), conditions=StackDataset(**conds))

    def build(self) -> tuple[StackDataset, StackDataset]:
        return self._split(self.n_train, self.seed, False), self._split(self.n_val, self.seed + 1, True)

    def split(self, name: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """A whole split (``"train"`` or ``"val"``): media ``[N, 64, 22, 3]`` and condition values."""
        self.setup()
        data = {"train": self._train, "val": self._val}[name]
        return data.datasets["media"], dict(data.datasets["conditions"].datasets)

    def val_conditions(self, n: int) -> Conditions:
        """The first ``n`` validation clips' own music, caption and style (``[n]``-batched)."""
        if not 1 <= n <= self.n_val:
            raise ValueError(f"val_samples={n}: the dance validation split has n_val={self.n_val} clips")
        self.setup()
        conds = self._val.datasets["conditions"].datasets
        return Conditions({k: v[:n] for k, v in conds.items()})

    def score(self, media: torch.Tensor, conditions: Conditions) -> dict[str, float]:
        """Beat alignment (against the score's beats of the requested validation clips) and the
        physics metrics of generated dances ``[n, 64, 22, 3]`` asked for :meth:`val_conditions`."""
        from ..physics import physics
        from .beat_align import beat_alignment

        n = media.shape[0]
        beats = beat_lists(self.raw["val"]["beats"][:n])
        out = {"beat_align": beat_alignment(media, beats)}
        out.update({k: v for k, v in physics(media).items() if k in ("accel", "lowest_toe", "foot_skating")})
        return out
