"""Audio front-end: file I/O, the log-mel representation and mel->audio vocoders."""

from dittomusic.audio.io import load_audio, save_wav
from dittomusic.audio.mel import MelConfig, MelSpectrogram, db_to_unit, mel_spectrogram, unit_to_db
from dittomusic.audio.vocoder import (GriffinLimVocoder, NeuralVocoder, Vocoder, available_vocoders, default_vocoder,
                                      get_vocoder, register_vocoder)

__all__ = [
    "MelConfig", "MelSpectrogram", "mel_spectrogram", "db_to_unit", "unit_to_db",
    "Vocoder", "GriffinLimVocoder", "NeuralVocoder", "get_vocoder", "register_vocoder", "available_vocoders",
    "default_vocoder",
    "load_audio", "save_wav",
]
