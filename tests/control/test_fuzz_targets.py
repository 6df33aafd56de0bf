"""Fuzzing the control targets' front door: note strings, MIDI bytes, intensity CSVs and presets,
structure patterns, painting options and task names. Only a valid target or a DittoError."""

import math
import struct
import tempfile
from pathlib import Path

import numpy as np
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from dittomusic.audio.mel import MelConfig
from dittomusic.control import masks as M
from dittomusic.control import targets as T
from dittomusic.control.tasks import TaskOptions, build_control, split_task

from ..fuzzing import accepts_or_refuses, fewer, no_hang

CFG = MelConfig()
frames = st.integers(min_value=-3, max_value=700)
some_floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1e-300, 1e300, 5e-3])
numbers_as_text = some_floats.map(repr) | st.integers(-10**30, 10**30).map(str) | st.text(max_size=8)

# ------------------------------------------------------------------ note strings

note_name = st.builds(
    lambda letter, acc, octave: f"{letter}{acc}{octave}",
    st.sampled_from(list("ABCDEFGabcdefgHXr") + ["rest", "R", ""]),
    st.text(alphabet="#b♯♭", max_size=4),
    st.none().map(lambda _: "") | st.integers(-10**6, 10**6).map(str) | st.sampled_from(["-", "٣", "1.5", "+4"]),
)
note_token = st.builds(lambda n, d, sep: f"{n}{sep}{d}", note_name, numbers_as_text, st.sampled_from([":", "::", "", " "]))
note_strings = st.lists(note_token, max_size=12).map(" ".join) | st.text(max_size=60)


@given(text=note_strings, n=st.none() | frames)
@example("C4:1e300", None)  # found by hand: a 1e302-frame array
@example("C4:1e308 D4:1e308", 10)  # the running time overflows to inf
def test_fuzz_note_strings(text, n):
    with no_hang():
        y = accepts_or_refuses(T.melody_from_string, text, n)
    if y is not None:
        assert y.dtype == torch.int64 and y.ndim == 1 and len(y) >= 1
        assert ((y >= -1) & (y <= 11)).all()
        if n is not None:
            assert len(y) == n


@given(name=note_name | st.text(max_size=12))
def test_fuzz_note_names(name):
    pc = accepts_or_refuses(T.parse_note, name)
    assert pc is None or -1 <= pc <= 11


# ------------------------------------------------------------------ MIDI bytes

def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


midi_event = st.one_of(
    st.tuples(st.integers(0, 2**28 - 1), st.integers(0x80, 0xEF), st.integers(0, 255), st.integers(0, 255))
    .map(lambda e: _vlq(e[0]) + bytes([e[1], e[2] & 0x7F, e[3] & 0x7F])),
    st.tuples(st.integers(0, 1000), st.integers(0, 3), st.binary(max_size=6))  # meta: tempo, end of track, junk
    .map(lambda e: _vlq(e[0]) + bytes([0xFF, (0x51, 0x2F, 0x58, 0x7F)[e[1]], len(e[2])]) + e[2]),
    st.binary(max_size=8),
)


@st.composite
def midi_files(draw):
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    tracks = b""
    for _ in range(draw(st.integers(1, 3))):
        body = b"".join(draw(st.lists(midi_event, max_size=20)))
        if draw(st.booleans()):
            body += b"\x00\xff\x2f\x00"
        length = draw(st.sampled_from([len(body), len(body) + 7, 0, 2**31]))
        tracks += b"MTrk" + struct.pack(">I", length) + body
    fmt, ntrk = draw(st.integers(0, 3)), draw(st.integers(0, 4))
    division = draw(st.sampled_from([480, 96, 1, 0, 0x7FFF, 0xE250]))  # 0xE250: SMPTE 25 fps
    return b"MThd" + struct.pack(">IHHH", 6, fmt, ntrk, division) + tracks


@fewer(25)
@given(data=midi_files(), n=st.none() | st.integers(1, 700))
def test_fuzz_midi_bytes(data, n):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "fuzz.mid"
        p.write_bytes(data)
        with no_hang():
            y = accepts_or_refuses(T.melody_from_midi, p, n)
    if y is not None:
        assert y.dtype == torch.int64 and ((y >= -1) & (y <= 11)).all() and (n is None or len(y) == n)


# ------------------------------------------------------------------ intensity CSVs and presets

csv_row = st.tuples(numbers_as_text, numbers_as_text).map(",".join) | st.text(max_size=20)
csv_texts = st.builds(lambda head, rows, nl: head + nl + nl.join(rows),
                      st.sampled_from(["time_s,db", "TIME_S , DB", "\ufefftime_s,db", "t,db", ""]),
                      st.lists(csv_row, max_size=10), st.sampled_from(["\n", "\r\n", "\r"]))


@given(content=csv_texts.map(str.encode) | st.binary(max_size=200), n=frames)
def test_fuzz_intensity_csv(content, n):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "curve.csv"
        p.write_bytes(content)
        with no_hang():
            y = accepts_or_refuses(T.intensity_from_csv, p, n)
    if y is not None:
        lo, hi = T.feat.intensity_db_range(CFG)
        assert y.shape == (n,) and torch.isfinite(y).all() and lo - 1e-3 <= y.min() and y.max() <= hi + 1e-3


def test_a_csv_field_beyond_the_csv_modules_limit_is_refused(tmp_path):
    p = tmp_path / "wide.csv"
    p.write_text("time_s,db\n0," + "1" * 200_000 + "\n")
    assert accepts_or_refuses(T.intensity_from_csv, p, 10) is None


@given(name=st.sampled_from(T.INTENSITY_PRESETS) | st.text(max_size=12), n=frames, lo=some_floats, hi=some_floats)
def test_fuzz_intensity_preset(name, n, lo, hi):
    y = accepts_or_refuses(T.intensity_preset, name, n, lo, hi)
    if y is not None:
        assert y.shape == (n,) and torch.isfinite(y).all()


# ------------------------------------------------------------------ structure patterns

@given(pattern=st.text(alphabet="ABCabcXYZ -_,|", max_size=20) | st.text(max_size=20), n=st.integers(-2, 300))
def test_fuzz_structure_patterns(pattern, n):
    with no_hang():
        y = accepts_or_refuses(T.structure_from_pattern, pattern, n)
    if y is not None:
        assert y.shape == (n, n) and torch.isfinite(y).all()


# ------------------------------------------------------------------ painting options

@given(kind=st.sampled_from(["outpaint", "inpaint", "loop", "loop-free"]), ref_frames=st.integers(1, 120),
       a=some_floats, b=some_floats, n=st.none() | frames)
@example("outpaint", 1, 2.0871176531734825e+306, 0.0, None)  # found by the deep profile: frames overflow
def test_fuzz_painting_masks(kind, ref_frames, a, b, n):
    ref = torch.zeros(8, ref_frames)
    cfg = MelConfig(n_mels=8)
    with no_hang():
        if kind == "outpaint":
            m = accepts_or_refuses(M.outpaint_masks, ref, a, n, cfg)
        elif kind == "inpaint":
            m = accepts_or_refuses(M.inpaint_masks, ref, a, b, n, cfg)
        elif kind == "loop":
            m = accepts_or_refuses(M.loop_masks, ref, a, n, None, cfg)
        else:
            m = accepts_or_refuses(M.loop_masks, None, a, n, None if math.isnan(b) else b, cfg)
    if m is not None:
        assert len(m.gen_idx) == len(m.ref_idx) >= 1
        assert 0 <= int(m.gen_idx.min()) and int(m.gen_idx.max()) < m.frames


# ------------------------------------------------------------------ tasks

task_names = st.lists(st.sampled_from(["intensity", "melody", "structure", "outpaint", "inpaint", "loop", "tempo",
                                       " Melody ", ""]), max_size=4).map("+".join) | st.text(max_size=20)


@given(task=task_names)
def test_fuzz_task_names(task):
    parts = accepts_or_refuses(split_task, task)
    assert parts is None or (parts and len(set(parts)) == len(parts))


@fewer(30)
@given(task=task_names, n=st.integers(1, 200), notes=st.none() | note_strings, pattern=st.text(max_size=8),
       preset=st.sampled_from(T.INTENSITY_PRESETS) | st.text(max_size=6), lo=some_floats, hi=some_floats,
       overlap=some_floats)
def test_fuzz_build_control(task, n, notes, pattern, preset, lo, hi, overlap):
    opts = TaskOptions(preset=preset, low_db=lo, high_db=hi, target_notes=notes, target_pattern=pattern,
                       overlap_s=overlap)
    with no_hang():
        ctrl = accepts_or_refuses(build_control, task, n, opts, CFG)
    if ctrl is not None:
        mel = torch.zeros(1, CFG.n_mels, n)
        loss = ctrl.loss(mel)
        assert np.isfinite(loss.detach().numpy()).all()
