"""Seconds per 5.94 s clip (512 mel frames) of vocoder designs, random weights, this CPU.

Compares the ConvNeXt + iSTFT vocoder (Vocos design) at a few sizes and both phase heads with a small
HiFi-GAN-style generator (V2: 128 channels; V3-like: 256 channels, fewer resblocks) and
Griffin-Lim, in one run, so the numbers share the machine's load. Prints JSON.

    python benchmarks/vocoder_speed.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn
from torch.nn import functional as F


class _ResBlock(nn.Module):  # HiFi-GAN ResBlock1
    def __init__(self, ch: int, k: int, dilations=(1, 3, 5)):
        super().__init__()
        self.c1 = nn.ModuleList(nn.Conv1d(ch, ch, k, dilation=d, padding=d * (k - 1) // 2) for d in dilations)
        self.c2 = nn.ModuleList(nn.Conv1d(ch, ch, k, padding=(k - 1) // 2) for _ in dilations)

    def forward(self, x):
        for a, b in zip(self.c1, self.c2):
            x = x + b(F.leaky_relu(a(F.leaky_relu(x, 0.1)), 0.1))
        return x


class HiFiGAN(nn.Module):
    """HiFi-GAN generator: upsample x8 x8 x2 x2 = 256 = hop, multi-receptive-field fusion."""

    def __init__(self, n_mels=160, ch=128, rates=(8, 8, 2, 2), kernels=(3, 7, 11)):
        super().__init__()
        self.pre = nn.Conv1d(n_mels, ch, 7, padding=3)
        self.ups, self.res = nn.ModuleList(), nn.ModuleList()
        c = ch
        for r in rates:
            self.ups.append(nn.ConvTranspose1d(c, c // 2, 2 * r, r, padding=r // 2))
            c //= 2
            self.res.append(nn.ModuleList(_ResBlock(c, k) for k in kernels))
        self.post = nn.Conv1d(c, 1, 7, padding=3)

    def forward(self, mel):
        x = self.pre(mel)
        for up, rs in zip(self.ups, self.res):
            x = up(F.leaky_relu(x, 0.1))
            x = sum(r(x) for r in rs) / len(rs)
        return torch.tanh(self.post(F.leaky_relu(x))).squeeze(1)


def timeit(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--frames", type=int, default=512)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from dittomusic.audio import MelConfig, get_vocoder
    from dittomusic.audio.neural import ConvNeXtVocoder, VocoderConfig

    mel_cfg = MelConfig()
    seconds = (a.frames - 1) * mel_cfg.hop_length / mel_cfg.sample_rate
    mel = torch.rand(1, mel_cfg.n_mels, a.frames) * 2 - 1
    torch.manual_seed(0)
    nets = {}
    for dim, inter, layers, n_fft, phase, prior in (
            (512, 1536, 8, 1024, "direct", False), (384, 1152, 8, 1024, "direct", False),
            (256, 768, 8, 1024, "direct", False), (256, 768, 8, 1024, "recurrent", False),
            (256, 768, 8, 1024, "recurrent", True), (256, 768, 8, 2048, "recurrent", True),
            (192, 576, 6, 1024, "recurrent", True)):
        cfg = VocoderConfig.for_mel(mel_cfg, dim=dim, intermediate=inter, layers=layers, n_fft=n_fft, phase=phase,
                                    magnitude_prior=prior)
        nets[f"convnext_{dim}x{layers}_nfft{n_fft}_{phase}{'_prior' if prior else ''}"] = ConvNeXtVocoder(cfg).eval()
    nets["hifigan_v2_128ch"] = HiFiGAN(ch=128).eval()
    nets["hifigan_v3like_256ch_1res"] = HiFiGAN(ch=256, kernels=(3,)).eval()
    rows = {}
    with torch.inference_mode():
        for name, net in nets.items():
            s = timeit(lambda: net(mel), a.repeats)
            rows[name] = {"params_M": round(sum(p.numel() for p in net.parameters()) / 1e6, 2),
                          "s_per_clip": round(s, 4), "realtime_x": round(seconds / s, 1)}
        gl = get_vocoder("griffinlim", mel_cfg)
        s = timeit(lambda: gl(mel), max(1, a.repeats // 2))
        rows["griffinlim"] = {"params_M": 0, "s_per_clip": round(s, 4), "realtime_x": round(seconds / s, 1)}
    from dittomusic.utils import machine_info

    print(json.dumps({"machine": machine_info(), "threads": a.threads, "frames": a.frames, "clip_seconds": round(seconds, 3),
                      "torch": torch.__version__, "vocoders": rows}, indent=1))


if __name__ == "__main__":
    main()
