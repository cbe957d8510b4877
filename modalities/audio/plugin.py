"""The audio modality's plugin class (registered as ``audio`` under ``polyguide.modalities``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import torch

from framework.core.conditions import ConditionSpec
from framework.core.plugins import Codec, LazyClasses, Modality
from framework.core.shipped import recipes_dir

from .beats import beats_encoder, music_encoder, onsets_encoder

# music: imports of the music side (audio-music)
from .chroma import melody
from .codec import EncodecCodec
from .mel import LogMel
from .music import INSTRUMENTS, STYLES
from .speech import PITCHES, SPEAKERS, WORDS
from .world import World

__all__ = ["AudioModality", "words_judge"]

RECIPES = recipes_dir("audio")  # the checkout's recipes/audio, or the installed polyguide_recipes.audio


def words_judge(cache_dir: Path | str, *, n_train: int = 3000, n_val: int = 500, epochs: int = 6,
                refs_per_speaker: int = 6):
    """The judge of spoken-word models: ``word``, ``speaker`` and ``pitch`` heads of a log-mel CNN
    trained on real clips (render seed 1000, apart from the recipes' seeds 0 and 1), held out on
    seed 1001, cached as ``cache_dir/judge-words.pt``; ``speaker_sim`` compares resemblyzer
    embeddings with ``refs_per_speaker`` held-out clips per speaker."""
    from .metrics import AudioJudge, cached_classifier
    from .speech import load_words

    heads = {"word": len(WORDS), "speaker": len(SPEAKERS), "pitch": len(PITCHES)}
    cache = Path(cache_dir) / "judge-words.pt"
    held = load_words(n_val, 1001)
    if cache.exists():  # the training clips are only rendered when the judge must be trained
        train = (torch.zeros(0, 1, 16_000), {})
    else:
        clips = load_words(n_train, 1000)
        train = (clips.audio, clips.conditions())
    clf = cached_classifier(cache, heads, train, epochs=epochs)
    refs = {s: held.audio[held.speaker == s][:refs_per_speaker] for s in range(len(SPEAKERS))}
    return AudioJudge(clf, (held.audio, held.conditions()),
                      speaker_refs={s: r for s, r in refs.items() if len(r)})


class AudioModality(Modality):
    """Mono audio ``[B, 1, samples]`` at 16 kHz in ``[−1, 1]``: spoken words and music."""

    name = "audio"
    description = "audio: spoken digits (eSpeak NG, word/speaker/pitch) and music (music21 + SoundFont)"
    representations = MappingProxyType({"mel": LogMel, "codec": EncodecCodec, "world": World})
    datamodules = LazyClasses({"words": f"{__package__}.data:WordsData",
                               # music: data modules (audio-music)
                               "music": f"{__package__}.music_data:MusicData"})
    #: conditions the shipped recipes take (the music data also labels a tempo bin, which no model
    #: conditions on, so it is not listed)
    conditions = MappingProxyType({
        "word": " | ".join(WORDS), "speaker": " | ".join(SPEAKERS) + " (eSpeak voice+variant)",
        "pitch": " | ".join(PITCHES) + " (eSpeak pitch setting, relative to the voice)",
        # music: conditions (audio-music)
        "style": " | ".join(STYLES), "instrument": " | ".join(INSTRUMENTS),
        "melody": "an audio file or a MIDI/MusicXML score (its chromagram, 12 pitch classes per frame; "
                  "cut or looped to 4 s)",
        "text": "a caption (MiniLM embedding)"})
    recipes_dir = RECIPES
    #: condition encoders, named ``"audio/<name>"`` in condition specs
    encoders = MappingProxyType({
        # music: encoders (audio-music)
        "melody": melody,
        # music features at the motion frame rate, for other modalities' conditions (dance)
        "onsets": onsets_encoder, "beats": beats_encoder, "music": music_encoder})
    #: the public API other plugins reach by name (``plugins.api("audio/<name>")``), imported on
    #: first use: rendering melodies and reading their beats, for motion conditioned on music (dance)
    api = LazyClasses({
        "sample_rate": f"{__package__}.features:SAMPLE_RATE",  # Hz of every waveform below
        "save_wav": f"{__package__}.features:save_wav",  # (path, wave [S]) -> path, 16-bit mono
        "load_melodies": f"{__package__}.music:load_melodies",  # (per_style, cache) -> Melodies
        "split_melodies": f"{__package__}.music_clips:split_melodies",  # training/held-out melodies
        "clip_notes": f"{__package__}.music:clip_notes",  # a melody's notes timed at a tempo
        "render": f"{__package__}.music:render",  # timed notes -> wave [S] on an instrument
        "music_features": f"{__package__}.beats:music_features",  # waves [B, S] -> [B, T, music_dim]
        "music_dim": f"{__package__}.beats:MUSIC_DIM",  # channels of the audio/music encoder
        "tempo_scale": f"{__package__}.beats:TEMPO_SCALE",  # bpm = tempo channel × tempo_scale
        "source_of": f"{__package__}.beats:source_of",  # encoded features -> their waveform or None
        "onset_envelope": f"{__package__}.beats:onset_envelope",  # waves [B, S] -> envelopes
        "estimate_beats": f"{__package__}.beats:estimate_beats"})  # an envelope -> its beat grid

    def write(self, media: torch.Tensor, out: Path, *, rows: Sequence[str] | None = None,
              title: str | None = None) -> list[Path]:
        """A WAV per sample, a labelled spectrogram grid ``grid.png`` and ``index.html`` with a
        player per sample (:func:`.writers.write_audio`)."""
        from .writers import write_audio

        return write_audio(media, out, rows=rows, title=title)

    def judge(self, specs: Mapping[str, ConditionSpec], codec: Codec, cache_dir: Path):
        """The words judge (:func:`words_judge`) for models with a ``word`` condition, the music
        judge for models with an ``instrument`` or ``style`` condition."""
        if "word" in specs or "speaker" in specs:
            return words_judge(cache_dir)
        # music: the music judge (audio-music)
        if "instrument" in specs or "style" in specs:
            from .metrics import music_judge

            return music_judge(cache_dir)
        raise ValueError(f"no audio judge for a model with conditions {sorted(specs)}; the audio "
                         f"judges score word/speaker/pitch or style/instrument")
