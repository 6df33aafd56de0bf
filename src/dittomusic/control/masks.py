"""Painting masks: which frames of the generated clip must match which frames of a reference
(outpaint, inpaint, loop) or of the clip itself (a reference-free loop)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from dittomusic.audio.mel import MelConfig
from dittomusic.errors import DittoError

from .targets import check_frames


def _ref_mel(ref_mel) -> Tensor:
    r = torch.as_tensor(ref_mel.detach() if isinstance(ref_mel, Tensor) else np.asarray(ref_mel))
    if r.dim() != 2 or r.shape[-1] < 1:
        raise DittoError(f"reference mel must be [n_mels, frames], got shape {tuple(r.shape)}")
    return r.float().cpu()


MAX_SECONDS = 86400.0  # any time a painting option gives; beyond it frame counts overflow soon after


def _seconds_to_frames(seconds: float, cfg: MelConfig, what: str) -> int:
    if not (math.isfinite(seconds) and abs(seconds) <= MAX_SECONDS):
        raise DittoError(f"{what} must be a number of seconds within +-{MAX_SECONDS:g}, got {seconds}")
    return cfg.frames_for(seconds)


def _overlap_frames(overlap_s: float, cfg: MelConfig) -> int:
    o = _seconds_to_frames(overlap_s, cfg, "overlap")
    if o < 1:
        raise DittoError(f"overlap must be at least one frame ({1 / cfg.frame_rate:.3f}s), got {overlap_s}s")
    return o


@dataclass
class PaintMasks:
    """Time masks of a painting task. Frame gen_idx[i] of the generated clip x0 must equal frame
    ref_idx[i] of ref_mel, or, for reference-free looping (ref_mel None), frame ref_idx[i] of x0
    itself. gen_mask / ref_mask are the papers' binary masks M_gen / M_ref over time."""

    kind: str  # "outpaint" | "inpaint" | "loop" | "loop-free"
    frames: int  # generated clip length F
    gen_idx: Tensor  # int64 [K]
    ref_idx: Tensor  # int64 [K]
    ref_mel: Tensor | None  # [n_mels, R] (CPU float32) or None = x0 itself
    cfg: MelConfig = field(default_factory=MelConfig)
    overlap: int = 0  # outpaint/loop: matched frames per side
    window_start: int = 0  # inpaint: reference frame where the generated window starts
    gap: tuple[int, int] = (0, 0)  # inpaint: gap [start, end) in generated-window frames
    loop_frames: int = 0  # loop-free: loop period L

    @property
    def self_referenced(self) -> bool:
        return self.ref_mel is None

    @property
    def gen_mask(self) -> Tensor:
        m = torch.zeros(self.frames, dtype=torch.bool)
        m[self.gen_idx] = True
        return m

    @property
    def ref_mask(self) -> Tensor:
        n = self.frames if self.ref_mel is None else self.ref_mel.shape[-1]
        m = torch.zeros(n, dtype=torch.bool)
        m[self.ref_idx] = True
        return m

    def target(self) -> Tensor | None:
        """y = M_ref (.) x_ref as the matched frames [n_mels, K]; None when self-referenced."""
        return None if self.ref_mel is None else self.ref_mel[:, self.ref_idx]


def outpaint_masks(ref_mel, overlap_s: float, frames: int | None = None, cfg: MelConfig | None = None) -> PaintMasks:
    """Continue the reference: the first overlap_s of the generated clip must match the last
    overlap_s of ref_mel [n_mels, R]. frames = generated length (default: the model's clip)."""
    cfg = cfg or MelConfig()
    r = _ref_mel(ref_mel)
    n = check_frames(frames if frames is not None else cfg.clip_frames)
    o = _overlap_frames(overlap_s, cfg)
    if o > r.shape[-1] or o >= n:
        raise DittoError(f"outpaint overlap of {overlap_s}s ({o} frames) must be shorter than the generated clip "
                         f"({n} frames) and no longer than the reference ({r.shape[-1]} frames)")
    R = r.shape[-1]
    return PaintMasks("outpaint", n, torch.arange(o), torch.arange(R - o, R), r, cfg, overlap=o)


def inpaint_masks(ref_mel, gap_start_s: float, gap_s: float, frames: int | None = None,
                  cfg: MelConfig | None = None) -> PaintMasks:
    """Fill a gap: everything of the generated window outside [gap_start_s, gap_start_s + gap_s)
    must match the reference. frames=None: the window is the whole reference; otherwise a
    `frames`-long window of the reference centred on the gap (for references longer than the
    model's clip)."""
    cfg = cfg or MelConfig()
    r = _ref_mel(ref_mel)
    R = r.shape[-1]
    n = check_frames(frames if frames is not None else R)
    g0, glen = _seconds_to_frames(gap_start_s, cfg, "inpaint gap start"), _seconds_to_frames(gap_s, cfg, "inpaint gap")
    if glen < 1 or g0 < 0 or g0 + glen > R:
        raise DittoError(f"inpaint gap {gap_start_s}s + {gap_s}s must be at least one frame long and lie inside "
                         f"the reference (0..{R / cfg.frame_rate:.2f}s)")
    if n > R:
        raise DittoError(f"inpaint window of {n} frames is longer than the reference ({R} frames)")
    if glen >= n:
        raise DittoError(f"inpaint gap ({glen} frames) leaves no context in a {n}-frame window; "
                         "use a shorter gap or a longer window")
    ws = min(max(0, int(round(g0 + glen / 2 - n / 2))), R - n)
    keep = torch.tensor([t for t in range(n) if not g0 <= ws + t < g0 + glen], dtype=torch.long)
    return PaintMasks("inpaint", n, keep, keep + ws, r, cfg, window_start=ws, gap=(g0 - ws, g0 - ws + glen))


def loop_masks(ref_mel=None, overlap_s: float = 0.5, frames: int | None = None, loop_s: float | None = None,
               cfg: MelConfig | None = None) -> PaintMasks:
    """Looping.

    With ref_mel [n_mels, R]: the generated clip bridges the reference's end back to its start:
    its first overlap_s match the reference's last overlap_s and its last overlap_s match the
    reference's first overlap_s, so reference + generated middle repeats seamlessly.

    Without a reference (App. E): the clip loops on itself with period L = loop_s (default:
    clip length - overlap): frames [L, L + o) must match frames [0, o), so x0[:L] repeated joins
    its own continuation.
    """
    cfg = cfg or MelConfig()
    n = check_frames(frames if frames is not None else cfg.clip_frames)
    o = _overlap_frames(overlap_s, cfg)
    if ref_mel is None:
        L = _seconds_to_frames(loop_s, cfg, "loop length") if loop_s is not None else n - o
        if L < o or L + o > n:
            raise DittoError(f"reference-free loop of {L} frames with a {o}-frame overlap needs overlap <= loop "
                             f"and loop + overlap <= clip length ({n} frames)")
        return PaintMasks("loop-free", n, torch.arange(L, L + o), torch.arange(o), None, cfg, overlap=o, loop_frames=L)
    if loop_s is not None:
        raise DittoError("loop_s applies to reference-free looping only; with a reference the loop length is "
                         "reference + generated clip - 2 * overlap")
    r = _ref_mel(ref_mel)
    R = r.shape[-1]
    if 2 * o >= n or o > R:
        raise DittoError(f"loop overlap of {overlap_s}s ({o} frames) must leave new material in the generated "
                         f"clip (2 * overlap < {n} frames) and fit in the reference ({R} frames)")
    gen = torch.cat([torch.arange(o), torch.arange(n - o, n)])
    ref = torch.cat([torch.arange(R - o, R), torch.arange(o)])
    return PaintMasks("loop", n, gen, ref, r, cfg, overlap=o)
