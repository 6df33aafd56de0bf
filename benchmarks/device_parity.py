"""The same seed on two devices: the same x_T (drawn on the CPU), and samples that differ only by
float rounding. Prints JSON.

    python benchmarks/device_parity.py cpu cuda
"""

import json
import sys

import torch

from dittomusic.generate import Pipeline, Tags


def main() -> None:
    devs = sys.argv[1:] or ["cpu", "cuda"]
    res, x = {}, {}
    for dev in devs:
        p = Pipeline(device=dev, precision="fp32")
        x[dev] = p.noise(2, p.model.cfg.clip_frames, 0)
        with torch.no_grad():
            res[dev] = p.sample(x[dev], Tags("chorale"), steps=20).float().cpu()
    a, b = devs[0], devs[-1]
    d = (res[a] - res[b]).abs()
    print(json.dumps({"devices": devs, "x_T_equal": bool(torch.equal(x[a].cpu(), x[b].cpu())),
                      "sample_max_abs_diff": float(d.max()), "sample_mean_abs_diff": float(d.mean()),
                      "sample_std": float(res[a].std())}))


if __name__ == "__main__":
    main()
