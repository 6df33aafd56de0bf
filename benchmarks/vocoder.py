"""Neural vocoder against Griffin-Lim on real test clips, in one run. Prints JSON.

    python benchmarks/vocoder.py --data data/full [--weights FILE] [--clips 24] [--threads 2]

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
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from dittomusic.eval.vocoder import evaluate_vocoders

    report, _ = evaluate_vocoders(a.data, a.weights, a.clips, a.seed)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
