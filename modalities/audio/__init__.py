"""The audio modality: spoken digits rendered by eSpeak NG and music from the music21 corpus
rendered with a General MIDI SoundFont; log-mel and neural-codec representations; WAV, spectrogram
and HTML writers; judges trained on real renders."""

from .plugin import AudioModality

__all__ = ["AudioModality"]
