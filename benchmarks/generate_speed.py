"""Generation speed of the bundled model on this machine. Prints JSON.

    python benchmarks/generate_speed.py [--model FILE] [--repeats 5]

Target (base-model issue): one 5.94 s clip, 20 steps with classifier-free guidance, vocoder
included, in <= 1.0 s, i.e. >= 6x faster than real time. The headline is the model's own default
sampler, guidance and precision (`generate` without options; the bundled v2: dpmpp_2m at 2.0; bf16 autocast on a
CPU with AMX / AVX512-BF16), beside 20-step DDIM at 3.0 and the default sampler in fp32; sampler rows are measured
side by side in the same run, and so are the default vocoder and Griffin-Lim (`vocoders_s`).
"""

import argparse
import json
import os
import statistics
import time

import torch

from dittomusic.audio.vocoder import get_vocoder
from dittomusic.generate import Pipeline, Tags
from dittomusic.sampling.samplers import model_calls


def timeit(fn, repeats):
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():  # CUDA kernels run asynchronously: time them, not their launch
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="auto", help="generation's (default: auto, as `generate`)")
    args = ap.parse_args()
    pipe = Pipeline(args.model, args.device, precision=args.precision)
    tags = Tags("chorale")
    clip_s = pipe.mel_cfg.clip_seconds
    rows = {}
    default = (pipe.sampling["sampler"], 20, pipe.sampling["guidance"])
    precision = pipe.precision
    runs = [(*c, precision) for c in dict.fromkeys((default, ("ddim", 20, 3.0), ("ddim", 20, 1.0), ("dpmpp_2m", 10, 3.0),
                                                   ("euler", 20, 3.0), ("heun", 10, 3.0)))]
    if precision != "fp32":
        runs.append((*default, "fp32"))
    for sampler, steps, guidance, prec in runs:
        x_T = pipe.noise(1, pipe.model.cfg.clip_frames, 0)
        pipe.backend.precision = prec
        with torch.no_grad():
            t_sample = timeit(lambda: pipe.sample(x_T, tags, sampler=sampler, steps=steps, guidance=guidance),
                              args.repeats)
        rows[f"{sampler}-{steps}-cfg{guidance:g}" + ("" if prec == precision else f"-{prec}")] = {
            "sampling_s": round(t_sample, 4),
            "model_calls": model_calls(sampler, steps),
            "batch_per_call": 2 if guidance != 1.0 else 1,
            "precision": prec,
        }
    pipe.backend.precision = precision
    mel = pipe.generate(tags, steps=2)[0]
    vocoders = {type(pipe.vocoder).__name__: pipe.vocoder}
    if type(pipe.vocoder).__name__ != "GriffinLimVocoder":  # the old default, side by side
        vocoders["GriffinLimVocoder"] = get_vocoder("griffinlim", pipe.mel_cfg, device=pipe.device)
    voc_s = {}
    with torch.no_grad():
        for name, voc in vocoders.items():
            voc_s[name] = round(timeit(lambda: voc(mel), args.repeats), 4)
    t_voc = voc_s[type(pipe.vocoder).__name__]
    total = rows[f"{default[0]}-20-cfg{default[2]:g}"]["sampling_s"] + t_voc
    from dittomusic.utils import machine_info

    print(json.dumps({
        "machine": machine_info(),
        "clip_seconds": round(clip_s, 3),
        "vocoder": type(pipe.vocoder).__name__,
        "vocoder_s": round(t_voc, 4),
        "vocoders_s": voc_s,
        "default": f"{default[0]}-20-cfg{default[2]:g}",
        "default_total_s": round(total, 4),
        "ddim20_cfg3_total_s": round(rows["ddim-20-cfg3"]["sampling_s"] + t_voc, 4),
        "precision": precision,
        "default_fp32_total_s": round(rows[f"{default[0]}-20-cfg{default[2]:g}" + ("" if precision == "fp32" else "-fp32")]
                                      ["sampling_s"] + t_voc, 4),
        "realtime_factor": round(clip_s / total, 2),
        "target_total_s": 1.0,
        "meets_target": total <= 1.0,
        "samplers": rows,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "model": args.model or "bundled",
    }, indent=2))


if __name__ == "__main__":
    main()
