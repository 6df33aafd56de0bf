"""Neural vocoder against Griffin-Lim on real test clips, in one run. Prints JSON.

    python benchmarks/vocoder.py --data data/full [--weights FILE] [--clips 24] [--threads 2]
                                 [--variant gl_iters=8,mel_match=0.5 ...]

Each test clip's original audio is re-rendered from its dataset row (checked against its stored
mel); both vocoders get the stored mel. Reports, per vocoder: multi-resolution STFT distance and
mel spectral convergence against the render, and seconds per 5.94 s clip (batch 1) with real-time
factor. Targets (vocoder issue): each distance >= 2x below Griffin-Lim's; <= 0.10 s per clip
(>= 60x real time) on 2 CPU cores. `dittomusic vocoder card --report OUT.json` turns the
output into the vocoder card.
"""

import argparse
import json

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="A built dataset (its test clips are used)")
    ap.add_argument("--weights", default=None, help="Vocoder release file or run folder [default: bundled]")
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variant", action="append", default=[],
                    help="The same weights under other synthesis settings, side by side, e.g. gl_iters=8,mel_match=0,gl_momentum=0.99")
    a = ap.parse_args()
    variants = []
    for v in a.variant:
        try:
            kv = dict(x.split("=", 1) for x in v.split(","))
            variants.append({"gl_iters": int(kv.pop("gl_iters"))} if "gl_iters" in kv else {})
            variants[-1].update({k: float(x) for k, x in kv.items()})
        except ValueError:
            ap.error(f"--variant {v!r}: give key=value pairs joined by commas, e.g. gl_iters=8,mel_match=0.5")
    torch.set_num_threads(a.threads)
    from dittomusic.eval.vocoder import evaluate_vocoders

    report, _ = evaluate_vocoders(a.data, a.weights, a.clips, a.seed, variants=variants)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
