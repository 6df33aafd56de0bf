"""Fuzzing the safetensors loaders with arbitrary bytes and with well-framed files whose header
(dtypes, shapes, offsets, metadata) is drawn at random: tensors and a metadata dict, or a DittoError."""

import json
import struct
import tempfile
from pathlib import Path

import torch
from hypothesis import example, given
from hypothesis import strategies as st

from dittomusic.checkpoint import load_tensors
from dittomusic.control.optimize import load_latent

from .fuzzing import accepts_or_refuses, no_hang

DTYPES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "I8": 1, "U8": 1, "BOOL": 1}
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                       max_size=3), max_leaves=8)


@st.composite
def safetensors_files(draw):
    header, data = {}, b""
    names = st.sampled_from(["x_T", "best_x_T", "exp_avg", "exp_avg_sq", "step", "w"]) | st.text(max_size=6)
    for name in draw(st.lists(names, max_size=5, unique=True)):
        dtype = draw(st.sampled_from(list(DTYPES) + ["F128", "", "I"]))
        shape = draw(st.lists(st.integers(0, 4) | st.sampled_from([-1, 2**40]), max_size=3))
        n = DTYPES.get(dtype, 4)
        for d in shape:
            n *= max(d, 0)
        n = min(n, 1 << 12)
        start = len(data)
        data += draw(st.binary(min_size=n, max_size=n))
        offsets = draw(st.sampled_from([[start, len(data)], [0, len(data) + 8], [len(data), start], [0]]))
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": offsets}
    if draw(st.booleans()):
        meta = draw(st.dictionaries(st.sampled_from(["dittomusic", "format", "x"]), st.text(max_size=10), max_size=2))
        if draw(st.booleans()):
            meta["dittomusic"] = json.dumps(draw(json_values | st.fixed_dictionaries(
                {"kind": st.sampled_from(["latent", "base"]) | st.text(max_size=5)})))
        header["__metadata__"] = meta
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    length = draw(st.sampled_from([len(hb), len(hb) + 1, 0, 2**63]))
    return struct.pack("<Q", length) + hb + data


def _framed(header: bytes) -> bytes:
    return struct.pack("<Q", len(header)) + header


@given(content=safetensors_files() | st.binary(max_size=200))
@example(_framed(b"[]"))  # a JSON header that is not an object
@example(_framed(b'{"__metadata__": {"dittomusic": "[1, 2]"}}'))  # our metadata, not a dict
@example(_framed(b'{"__metadata__": {"dittomusic": "{\\"kind\\": \\"latent\\"}"}}'))  # a latent without tensors
def test_fuzz_load_tensors_and_latents(content):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "fuzz.safetensors"
        p.write_bytes(content)
        with no_hang():
            res = accepts_or_refuses(load_tensors, p)
            latent = accepts_or_refuses(load_latent, p)
    if res is not None:
        tensors, meta = res
        assert isinstance(meta, dict) and all(isinstance(v, torch.Tensor) for v in tensors.values())
    if latent is not None:  # a latent we accept can be resumed from
        best, state, _ = latent
        x = torch.nn.Parameter(state["x_T"].float())
        if "exp_avg" in state:
            from dittomusic.control.optimize import Adam

            opt = Adam(x, lr=1e-3)
            opt.state[x] = {"step": state["step"].float().reshape(()), "exp_avg": state["exp_avg"].to(x),
                            "exp_avg_sq": state["exp_avg_sq"].to(x)}
            x.grad = torch.ones_like(x)
            opt.step()
        assert best.shape == x.shape
