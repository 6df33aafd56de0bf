"""Render arrangements to audio with FluidSynth (in-process, soundfont loaded once)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dittomusic.data.arrange import Arrangement
from dittomusic.errors import DittoError, PieceError, SoundfontNotFound

SOUNDFONT_CANDIDATES = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
INSTALL_HINT = "install it with `apt-get install fluidsynth fluid-soundfont-gm` (scripts/setup.sh does this)"


def find_soundfont(path: str | os.PathLike | None = None) -> Path:
    """The soundfont to use: `path`, else $DITTOMUSIC_SOUNDFONT, else FluidR3 GM from Debian."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise SoundfontNotFound(f"soundfont not found: {p}. Pass an existing .sf2 file, or {INSTALL_HINT}")
        return p
    env = os.environ.get("DITTOMUSIC_SOUNDFONT")
    if env:
        return find_soundfont(env)
    for c in SOUNDFONT_CANDIDATES:
        if Path(c).is_file():
            return Path(c)
    raise SoundfontNotFound(
        f"no General MIDI soundfont found (looked in {', '.join(SOUNDFONT_CANDIDATES)}); "
        f"{INSTALL_HINT}, or pass --soundfont FILE.sf2"
    )


def _load_fluidsynth():
    import contextlib
    import sys

    try:
        # pyfluidsynth prints where it found the library to stdout when $CI is set; keep stdout for our output
        with contextlib.redirect_stdout(sys.stderr):
            import fluidsynth
    except ImportError as e:
        raise DittoError(f"the FluidSynth library is missing ({e}); {INSTALL_HINT}") from None
    return fluidsynth


class FluidRenderer:
    """Renders arrangements with FluidSynth and a General MIDI soundfont.

    Each render gets a fresh synth (~35 ms): reverb and chorus state survive
    system_reset(), so a reused synth makes a render depend on the one before it, and
    a resumed build would not reproduce the same clips.
    """

    def __init__(self, soundfont: str | os.PathLike | None = None, sample_rate: int = 22050):
        self.soundfont = find_soundfont(soundfont)
        self.sample_rate = sample_rate
        self._fluidsynth = _load_fluidsynth()
        self._new_synth()[0].delete()  # validate the soundfont now, not mid-build

    def _new_synth(self):
        fs = self._fluidsynth.Synth(samplerate=float(self.sample_rate), gain=0.4)
        sfid = fs.sfload(str(self.soundfont))
        if sfid == -1:
            fs.delete()
            raise SoundfontNotFound(f"{self.soundfont} is not a valid SF2 soundfont; {INSTALL_HINT}")
        return fs, sfid

    def render(self, arr: Arrangement, target_rms_db: float = -20.0) -> np.ndarray:
        """Mono float32 audio of `arr.seconds`, loudness-normalized to target_rms_db + arr.gain_db."""
        fs, sfid = self._new_synth()
        try:
            out = self._play(fs, sfid, arr)
        finally:
            fs.delete()
        audio = out.reshape(-1, 2).astype(np.float32).mean(axis=1) / 32768.0
        rms = float(np.sqrt(np.mean(audio**2)))
        if not np.isfinite(rms) or rms < 1e-4:  # -80 dBFS; FluidSynth dithers, so never exactly 0
            raise PieceError("rendered audio is silent")
        audio *= 10 ** ((target_rms_db + arr.gain_db) / 20) / rms
        peak = float(np.abs(audio).max())
        if peak > 0.98:
            audio *= 0.98 / peak
        return audio

    def _play(self, fs, sfid: int, arr: Arrangement) -> np.ndarray:
        sr = self.sample_rate
        channels = [c for c in range(16) if c != 9]  # channel 10 is drums in GM
        events = []
        for j, part in enumerate(arr.parts):
            ch = channels[j % len(channels)]
            fs.program_select(ch, sfid, 0, part.instrument.program)
            n = part.notes
            on = np.round(n[:, 0] * sr).astype(np.int64)
            off = np.maximum(np.round((n[:, 0] + n[:, 1]) * sr).astype(np.int64), on + 1)
            for a, b, k, v in zip(on, off, n[:, 2].astype(int), n[:, 3].astype(int)):
                events.append((a, 1, ch, k, v))
                events.append((b, 0, ch, k, 0))
        total = int(round(arr.seconds * sr))
        events.sort(key=lambda e: (e[0], e[1]))  # note-offs first so repeated notes retrigger
        out = np.zeros(total * 2, dtype=np.int16)
        cur = 0
        for t, kind, ch, k, v in events:
            t = min(t, total)
            if t > cur:
                out[2 * cur:2 * t] = fs.get_samples(int(t - cur))
                cur = t
            if kind:
                fs.noteon(ch, int(k), int(v))
            else:
                fs.noteoff(ch, int(k))
        if total > cur:
            out[2 * cur:] = fs.get_samples(int(total - cur))
        return out
