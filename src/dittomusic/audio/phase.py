"""Phase from magnitude: identity phase locking, then Griffin-Lim refinement.

A mel fixes (roughly) the magnitude of an STFT but not its phase, and the phase decides whether
the overlap-add keeps each partial's energy. Measured on val renders (8 segments of 128 frames,
`benchmarks/vocoder.py` and docs/vocoder/training_log.md): with the *true* magnitude at n_fft 1024,
random phases give a mel spectral convergence of 0.63, 32 iterations of fast Griffin-Lim from random
phases ~0.2, phase locking alone 0.081, and phase locking followed by 16 Griffin-Lim iterations 0.042.

Phase locking (Laroche & Dolson 1999, "identity phase locking", without an analysis phase): in each
frame the magnitude's peaks are the partials. A peak's frequency comes from a parabola through the
log-magnitudes of its bin and its neighbours, its phase advances from the previous frame at that
frequency, and every bin takes the phase of its nearest peak, so the bins of one partial stay
coherent however long it lasts. Phases are relative to each frame's centre; `to_stft_phase` adds
the (-1)^k that torch.stft's frame-start convention needs.

Both steps are differentiable in the magnitude (peak assignment is discrete, the frequencies and
the Griffin-Lim projections are not), so a control can backpropagate from audio through them.
"""

from __future__ import annotations

import math

import torch


def locked_phase(mag: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """Magnitudes [B, n_fft // 2 + 1, T] -> frame-centred phases [B, bins, T] by identity phase locking."""
    b, k, t = mag.shape
    # frame-major [T, B, bins]: the scans over bins then run along the innermost dimension (7x faster
    # than along dim 1 on a 6 s clip) and the recurrence reads one contiguous frame per step
    logm = mag.permute(2, 0, 1).clamp_min(1e-7).log().contiguous()
    left, mid, right = logm[..., :-2], logm[..., 1:-1], logm[..., 2:]
    peak = torch.zeros_like(logm, dtype=torch.bool)
    peak[..., 1:-1] = (mid > left) & (mid >= right)
    curv = left - 2 * mid + right
    flat = curv.abs() <= 1e-9
    offset = torch.zeros_like(logm)
    offset[..., 1:-1] = torch.where(flat, 0.0, 0.5 * (left - right) / torch.where(flat, 1.0, curv)).clamp(-0.5, 0.5)
    bins = torch.arange(k, device=mag.device)
    advance = (bins + offset) * (2 * math.pi * hop / n_fft)  # phase advance per hop at the peak
    # every bin follows its nearest peak (a frame without peaks: every bin its own)
    big = 1 << 30
    last = torch.where(peak, bins, -big).cummax(dim=-1).values
    nxt = torch.where(peak, bins, big).flip(-1).cummin(dim=-1).values.flip(-1)
    owner = torch.where(bins - last <= nxt - bins, last, nxt).clamp(0, k - 1)
    owner = torch.where(peak.any(dim=-1, keepdim=True), owner, bins)
    step = 0.5 * (advance[1:] + advance[:-1])  # the mean of the two frames' frequency estimates
    add = torch.gather(step, 2, owner[1:])  # what frame i adds: the step of the bin it reads
    psi = [torch.zeros(b, k, device=mag.device, dtype=mag.dtype)]
    for i in range(1, t):
        psi.append(torch.gather(psi[-1], 1, owner[i]) + add[i - 1])
    return torch.stack(psi, -1)


def to_stft_phase(psi: torch.Tensor) -> torch.Tensor:
    """Frame-centred phases -> torch.stft's convention (phase measured from the frame's first sample)."""
    k = psi.shape[-2]
    return psi + math.pi * (torch.arange(k, device=psi.device) % 2).to(psi.dtype)[:, None]


def griffin_lim(mag: torch.Tensor, phase: torch.Tensor, n_fft: int, hop: int, iters: int, momentum: float = 0.0,
                window: torch.Tensor | None = None, length: int | None = None,
                mel_match: tuple | None = None) -> torch.Tensor:
    """`iters` Griffin-Lim projections from `phase` (fast Griffin-Lim for momentum > 0); returns the audio.
    `window` defaults to a Hann window of n_fft.

    Magnitudes stay fixed unless `mel_match` = (mel_of, spread, target, step): `mel_of(wav, rebuilt)` gives
    the mel power of the audio (from its rebuilt STFT when that is the mel's own), `spread` [bins, n_mels]
    maps each band's log gain to the bins it covers, `target` is the mel power [..., n_mels, T] the audio
    was made from. Each projection then rescales every bin by its bands' gain (target / rebuilt, to the
    power `step`), so the audio's own mel converges to the one it was made from. Why: a magnitude predicted
    from a mel is only roughly right, and the rebuilt STFT moves energy between bands; measured on 4 test
    clips with a small vocoder, 16 projections with step 0.5 took the mel spectral convergence from 0.136
    to 0.059."""
    window = torch.hann_window(n_fft, device=mag.device, dtype=mag.dtype) if window is None else window
    length = (mag.shape[-1] - 1) * hop if length is None else length
    angles = torch.polar(torch.ones_like(mag), phase)
    rebuilt = torch.zeros_like(angles)
    beta = momentum / (1 + momentum)
    if mel_match is not None:
        mel_of, spread, target, step = mel_match
        log_target = target.clamp_min(1e-10).log()
    for _ in range(iters):
        prev = rebuilt
        wav = torch.istft(mag * angles, n_fft, hop, window=window, center=True, length=length)
        rebuilt = torch.stft(wav, n_fft, hop, window=window, center=True, pad_mode="constant", return_complex=True)
        if mel_match is not None:
            got = mel_of(wav, rebuilt).clamp_min(1e-10).log()
            t = min(got.shape[-1], log_target.shape[-1], mag.shape[-1])
            # a bound on one step's gain (10x) keeps a band the rebuilt audio left empty from exploding
            gain = torch.matmul(spread, 0.5 * step * (log_target[..., :t] - got[..., :t])).clamp(-2.3, 2.3).exp()
            mag = torch.cat([mag[..., :t] * gain, mag[..., t:]], -1)
        # sgn: the unit phasor (0 at 0), 5x faster than dividing by abs (measured, 2048 x 517 bins)
        angles = torch.sgn(rebuilt - beta * prev if momentum else rebuilt)
    return torch.istft(mag * angles, n_fft, hop, window=window, center=True, length=length)
