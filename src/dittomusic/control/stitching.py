"""Stitching a painted clip with its reference: crossfades inside the matched regions, placed
where the join is smoothest (judged on the mel, or by listening through the vocoder)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from dittomusic.audio.mel import MelConfig
from dittomusic.errors import DittoError

from . import features as feat
from .masks import PaintMasks


# Crossfade at each junction. 0.2 s rather than 0.1: a residual mismatch between the generated
# overlap and the reference is spread over twice the frames, and on the control eval's DITTO
# outpaints (best cut) the seam ratios went from 1.18-1.52 (4 of 5 <= 1.5) to 0.91-1.38 (5 of 5).
CROSSFADE_S = 0.2


@dataclass
class Stitched:
    """A stitched result: mel [..., n_mels, N] and/or mono audio [samples], with the stitch
    boundaries (centres of the crossfades) in seconds of the output."""

    boundaries_s: list[float]
    mel: Tensor | None = None
    audio: np.ndarray | None = None


# Audio heard around a candidate fade when the cut is chosen by listening: the fade plus this
# much on each side, enough for the vocoder's window (n_fft 2048 = 93 ms) to settle before the
# frames the seam metric reads (+-50 ms of the fade centre).
LISTEN_CONTEXT_S = 0.25


def _fades(A: Tensor, a0: int, B: Tensor, b0: int, starts, x: int, ctx: int = 0
           ) -> tuple[list[Tensor], list[float]]:
    """Crossfades of x frames from A into B starting j frames into their matched run (A[a0:]
    against B[b0:]) for each j in starts, each cut out with up to ctx frames of A before the
    fade and of B after it: (stitched pieces [..., n_mels, T_j], the fade centres in frames of
    each piece)."""
    r = (torch.arange(x, dtype=A.dtype, device=A.device) + 0.5) / max(x, 1)
    shape = torch.broadcast_shapes(A.shape[:-1], B.shape[:-1])
    pieces, centres = [], []
    for j in starts:
        lo, hi = max(0, a0 + j - ctx), min(B.shape[-1], b0 + j + x + ctx)
        mix = A[..., a0 + j:a0 + j + x] * (1 - r) + B[..., b0 + j:b0 + j + x] * r
        parts = [A[..., lo:a0 + j], mix, B[..., b0 + j + x:hi]]
        pieces.append(torch.cat([q.expand(*shape, q.shape[-1]) for q in parts], dim=-1))
        centres.append(a0 + j - lo + x / 2)
    return pieces, centres


def _pick(costs: dict[int, float], default: int) -> int:
    """The start with the lowest cost; ties (within 1e-9) go to the one nearest `default`."""
    low = min(costs.values())
    return min((j for j, c in costs.items() if c <= low + 1e-9), key=lambda j: abs(j - default))


def _mel_costs(a: Tensor, b: Tensor, x: int) -> list[float]:
    """Per crossfade start: the largest frame-to-frame flux (mean |change| over mel bins) of the
    stitched frames from one frame before the fade to one after."""
    a, b = torch.broadcast_tensors(a.detach().float(), b.detach().float())
    a, b = a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:])
    K = a.shape[-1]
    r = (torch.arange(x, dtype=a.dtype) + 0.5) / max(x, 1)
    costs = []
    for j in range(K - x + 1):
        lo, up = max(0, j - 1), min(K, j + x + 1)
        parts = [a[..., lo:j]] if j > lo else []
        if x:
            parts.append(a[..., j:j + x] * (1 - r) + b[..., j:j + x] * r)
        if up > j + x:
            parts.append(b[..., j + x:up])
        seg = torch.cat(parts, dim=-1)
        costs.append(float(seg.diff(dim=-1).abs().mean(dim=-2).amax()) if seg.shape[-1] > 1 else 0.0)
    return costs


def listen_costs(vocoder: Callable[[Tensor], Tensor], cfg: MelConfig, window_s: float | None = feat.SEAM_WINDOW_S
                 ) -> Callable[[list[Tensor], list[float], int], list[float]]:
    """A cut judge that listens: each candidate stitch is vocoded and scored by the largest
    spectral flux of its audio (`features.spectral_flux`) within +-window_s of the fade centre,
    the middle of the fade where the two sides mix most evenly and where the seam metric reads a
    boundary (None: the whole fade and one frame on each side); over a batch, the worst item
    counts."""
    sr = cfg.sample_rate

    def judge(pieces: list[Tensor], centres: list[float], x: int) -> list[float]:
        half = window_s if window_s is not None else (x / 2 + 1) / cfg.frame_rate
        costs = [0.0] * len(pieces)
        by_len: dict[int, list[int]] = {}
        for i, p in enumerate(pieces):
            by_len.setdefault(p.shape[-1], []).append(i)
        for idx in by_len.values():  # one vocoder batch per piece length
            batch = torch.stack([pieces[i] for i in idx])
            with torch.no_grad():
                audio = vocoder(batch.reshape(-1, *batch.shape[-2:])).detach().cpu().numpy()
            for i, clips in zip(idx, audio.reshape(len(idx), -1, audio.shape[-1])):
                for a in clips:
                    flux, t = feat.spectral_flux(a, sr)
                    near = np.abs(t - centres[i] / cfg.frame_rate) <= half
                    costs[i] = max(costs[i], float(flux[near].max()) if near.any() else 0.0)
        return costs

    return judge


def _best_start(A: Tensor, a0: int, B: Tensor, b0: int, K: int, x: int, default: int,
                judge: Callable | None = None, ctx: int = 0) -> int:
    """Where in a matched run of K frames (A[a0:a0 + K] before the junction against B[b0:b0 + K]
    after it) to start a crossfade of x frames; the lowest cost wins, ties go to `default`.

    Without a judge the cost is scored on the mel like the seam metric: the largest
    frame-to-frame flux of the stitched frames around the fade. With one (`listen_costs`) each
    candidate is vocoded with ctx frames of context and judged on the audio, the domain in
    which the seam is heard and scored (mel bins weigh low frequencies far more than an STFT).
    Cutting where both sides agree and the music is steady is what an editor does by hand: a
    mismatch spread over the fade or an onset right at the junction is what makes a seam audible."""
    hi = K - x
    if hi <= 0:
        return 0
    if judge is None:
        return _pick(dict(enumerate(_mel_costs(A[..., a0:a0 + K], B[..., b0:b0 + K], x))), default)
    A, B = A.detach().float(), B.detach().float()
    # every other start, then the neighbours of the best: half the vocoding, and the metric's
    # +-50 ms window spans about 9 frames, so adjacent starts are heard alike
    coarse = sorted({*range(0, hi + 1, 2), hi, default})
    costs = dict(zip(coarse, judge(*_fades(A, a0, B, b0, coarse, x, ctx), x)))
    b = _pick(costs, default)
    fine = [j for j in (b - 1, b + 1) if 0 <= j <= hi and j not in costs]
    if fine:
        costs.update(zip(fine, judge(*_fades(A, a0, B, b0, fine, x, ctx), x)))
    return _pick(costs, default)


def _plan(m: PaintMasks, xf: int, tail: int = 0, gen: Tensor | None = None, judge: Callable | None = None,
          ) -> tuple[list[tuple[str, int, int]], list[int], int | None]:
    """Segments (source, start, end) in frames, the crossfade length at each junction between
    consecutive segments, and for loops the crossfade at the wrap (None: not cyclic). Each
    crossfade lies inside a matched region, where both sides should already agree. With the
    generated mel `gen`, each junction moves within its matched region to where the stitch is
    smoothest (`_best_start`, judged by `judge` if given); without it, junctions sit at the end
    of the region next to the new material.

    tail: frames at the end of each source that a junction may not use. Audio needs 1: a
    mel of N frames covers only (N - 1) * hop samples (+ less than a hop), so the last frame's
    span is not (fully) in the audio; junctions move one frame earlier, inside the match."""
    n = m.frames
    ref = m.ref_mel if m.ref_mel is None or gen is None else m.ref_mel.to(gen)
    ctx = m.cfg.frames_for(LISTEN_CONTEXT_S)

    def start(A, a0, B, b0, x, K, default):
        # a crossfade start j in [0, K - x] of a K-frame matched run A[a0:] against B[b0:]
        return default if gen is None else _best_start(A, a0, B, b0, K, x, default, judge, ctx)

    if m.kind == "outpaint":
        R, o = m.ref_mel.shape[-1], m.overlap
        x = max(0, min(xf, o - tail))
        K = o - tail
        j = start(ref, R - o, gen, 0, x, K, K - x)
        return [("ref", 0, R - o + j + x), ("gen", j, n)], [x], None
    if m.kind == "inpaint":
        R, ws = m.ref_mel.shape[-1], m.window_start
        g0, g1 = m.gap
        xl, xr = min(xf, g0), max(0, min(xf, n - g1 - tail))
        segs, joins = [], []
        jl = start(ref, ws, gen, 0, xl, g0, g0 - xl)
        if ws + g0 > 0:
            segs.append(("ref", 0, ws + jl + xl))
            joins.append(xl)
        if ws + g1 < R:
            K = n - tail - g1
            jr = start(gen, g1, ref, ws + g1, xr, K, 0)
            segs += [("gen", jl, g1 + jr + xr), ("ref", ws + g1 + jr, R)]
            joins.append(xr)
        else:
            segs.append(("gen", jl, n))
        return segs, joins, None
    if m.kind == "loop":
        R, o = m.ref_mel.shape[-1], m.overlap
        x = max(0, min(xf, o - tail))
        K = o - tail
        jh = start(ref, R - o, gen, 0, x, K, K - x)
        jw = start(gen, n - o, ref, 0, x, K, 0)
        # the cycle starts where the wrap's fade ends in the reference, so its length stays R + n - 2o
        return [("ref", jw, R - o + jh + x), ("gen", jh, n - o + jw + x)], [x], x
    if m.kind == "loop-free":
        L = m.loop_frames
        K = min(m.overlap, n - tail - L)
        x = max(0, min(xf, K))
        d = start(gen, L, gen, 0, x, K, 0)
        return [("gen", d, L + d + x)], [], x
    raise DittoError(f"unknown painting kind {m.kind!r}")


def _assemble(pieces: list, joins: list[int], fade: Callable, cat):
    """Overlap-add consecutive pieces (arrays along the last axis) with crossfades of joins[i]
    samples between piece i and i+1; fade(x, left_tail, right_head) gives the two gain curves.
    Returns (output, junction centres in samples)."""
    out, centres = pieces[0], []
    for piece, x in zip(pieces[1:], joins):
        if x > 0:
            a, b = fade(x, out[..., -x:], piece[..., :x])
            mixed = out[..., -x:] * a + piece[..., :x] * b
            centres.append(out.shape[-1] - x / 2)
            out = cat([out[..., :-x], mixed, piece[..., x:]])
        else:
            centres.append(float(out.shape[-1]))
            out = cat([out, piece])
    return out, centres


def _expand(segs, joins, wrap, repeats: int):
    if wrap is None:
        return segs, joins, 0
    if repeats < 1:
        raise DittoError(f"repeats must be >= 1, got {repeats}")
    all_segs = segs * repeats
    # later cycles enter where the wrap's fade ends; the first plays its source from the top
    all_segs[0] = (all_segs[0][0], 0, all_segs[0][2])
    all_joins = []
    for i in range(repeats):
        all_joins += joins + ([wrap] if i < repeats - 1 else [])
    return all_segs, all_joins, wrap  # the final cycle's wrap tail is trimmed


def stitch(masks: PaintMasks, gen_mel, crossfade_s: float = CROSSFADE_S, repeats: int = 2,
           vocoder: Callable[[Tensor], Tensor] | None = None, best_cut: bool = True, listen: bool = True
           ) -> Stitched:
    """The final mel: reference and generated clip joined at the matched regions (outpaint:
    reference then the continuation; inpaint: the reference with the gap filled; loops: one
    cycle repeated `repeats` times). Each junction is a linear crossfade (in the scaled-dB mel)
    of up to crossfade_s (CROSSFADE_S) inside the matched region, placed where the stitch is smoothest
    (best_cut; False: at the end of the region next to the new material). gen_mel:
    [..., n_mels, F]; a batch shares its cut points. With a vocoder, the stitched mel is also
    vocoded (one continuous synthesis), and unless listen=False the cut is chosen by listening:
    each candidate fade is vocoded and the one with the least spectral flux at its centre wins
    (`listen_costs`; on the control eval's 105 painted clips this cut the mean seam ratio from
    1.19 to 1.10, and from 1.32 to 1.25 at a finer STFT the judge does not use)."""
    cfg = masks.cfg
    g = torch.as_tensor(gen_mel)
    if g.shape[-1] != masks.frames:
        raise DittoError(f"generated mel has {g.shape[-1]} frames, the masks were built for {masks.frames}")
    judge = listen_costs(vocoder, cfg) if vocoder is not None and listen else None
    segs, joins, wrap = _plan(masks, max(0, cfg.frames_for(crossfade_s)), gen=g if best_cut else None, judge=judge)
    segs, joins, trim = _expand(segs, joins, wrap, repeats)
    ref = None if masks.ref_mel is None else masks.ref_mel.to(device=g.device, dtype=g.dtype)
    pieces = []
    for src, a, b in segs:
        block = g[..., a:b] if src == "gen" else ref[..., a:b]
        pieces.append(block.expand(*g.shape[:-1], b - a) if src == "ref" else block)

    def fade(x, left, right):
        r = (torch.arange(x, device=g.device, dtype=g.dtype) + 0.5) / x
        return 1 - r, r

    out, centres = _assemble(pieces, joins, fade, lambda xs: torch.cat(xs, dim=-1))
    if trim:
        out = out[..., :-trim]
    res = Stitched([c / cfg.frame_rate for c in centres], mel=out)
    if vocoder is not None:
        with torch.no_grad():
            res.audio = vocoder(out).detach().cpu().numpy()
    return res


def stitch_audio(masks: PaintMasks, gen_audio, ref_audio=None, crossfade_s: float = CROSSFADE_S,
                 repeats: int = 2, gen_mel=None) -> Stitched:
    """Audio-domain stitch that keeps the original reference recording: the vocoded generated
    clip (gen frame i at sample i*hop) is joined to ref_audio (the audio the reference mel was
    computed from) with correlation-matched constant-power crossfades at the junctions of
    `stitch` (moved one frame earlier: the last frame of a mel is not fully in its audio).
    ref_audio is not used for reference-free loops. With gen_mel (the generated mel the audio
    was vocoded from), the junctions move to where the stitch is smoothest, as in `stitch`."""
    cfg = masks.cfg
    hop = cfg.hop_length
    g = np.asarray(gen_audio, dtype=np.float64)
    if g.ndim != 1:
        raise DittoError(f"stitch_audio expects mono generated audio [samples], got shape {g.shape}")
    lengths = {"gen": len(g)}
    g = np.pad(g, (0, max(0, masks.frames * hop - len(g))))
    r = None
    if masks.ref_mel is not None:
        if ref_audio is None:
            raise DittoError(f"{masks.kind} stitching needs the reference audio (ref_audio)")
        r = np.asarray(ref_audio, dtype=np.float64)
        R = masks.ref_mel.shape[-1]
        if r.ndim != 1 or abs(len(r) // hop + 1 - R) > 1:
            raise DittoError(f"reference audio of {r.shape} samples does not match the reference mel "
                             f"({R} frames = about {(R - 1) * hop} samples)")
        lengths["ref"] = len(r)
        r = np.pad(r, (0, max(0, R * hop - len(r))))
    gm = None
    if gen_mel is not None:
        gm = torch.as_tensor(gen_mel)
        if gm.shape[-1] != masks.frames:
            raise DittoError(f"generated mel has {gm.shape[-1]} frames, the masks were built for {masks.frames}")
    segs, joins, wrap = _plan(masks, max(0, cfg.frames_for(crossfade_s)), tail=1, gen=gm)
    segs, joins, trim = _expand(segs, joins, wrap, repeats)
    pieces = [(g if src == "gen" else r)[a * hop:b * hop] for src, a, b in segs]
    # inner segments use the zero-padded sources so junctions stay aligned; the last one ends
    # where its source really ends (a mel of N frames vocodes to (N - 1) * hop samples)
    src, a, b = segs[-1]
    pieces[-1] = pieces[-1][:max(0, min(b * hop, lengths[src]) - a * hop)]

    def fade(x, left, right):
        # constant-power crossfade for the measured correlation rho of the two sides: gains
        # (1 - r, r) / sqrt((1 - r)^2 + r^2 + 2 rho r (1 - r)). rho = 1 (same waveform) gives
        # the plain linear fade, rho = 0 (unrelated phases) an equal-power one; a fixed
        # equal-power fade would swell identical signals by 3 dB mid-fade (an audible seam).
        rho = float(np.dot(left, right) / (np.linalg.norm(left) * np.linalg.norm(right) + 1e-12))
        rho = min(max(rho, 0.0), 1.0)
        r = (np.arange(x) + 0.5) / x
        norm = np.sqrt((1 - r) ** 2 + r ** 2 + 2 * rho * r * (1 - r))
        return (1 - r) / norm, r / norm

    out, centres = _assemble(pieces, [x * hop for x in joins], fade, np.concatenate)
    if trim:
        out = out[:-trim * hop]
    return Stitched([c / cfg.sample_rate for c in centres], audio=out.astype(np.float32))
