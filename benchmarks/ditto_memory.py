"""Peak memory of one DITTO optimization step vs the number of sampling steps.

Each configuration runs in a fresh subprocess: load the bundled model, measure resident memory,
then run one forward + backward through the full sampler (intensity loss) while a thread samples
RSS every millisecond. Reported: peak RSS above that baseline. On CUDA the same is measured with
torch.cuda.max_memory_allocated. Targets (issue #4): 40 steps <= 1.25x 10 steps with
checkpointing; without checkpointing, 20 steps >= 3x the checkpointed 20 steps.

    python benchmarks/ditto_memory.py [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

CONFIGS = [(10, True), (20, True), (40, True), (20, False)]


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(steps: int, checkpoint: bool, device: str) -> dict:
    import torch

    from dittomusic.control import get_control, intensity_preset
    from dittomusic.generate import Pipeline, make_tags

    torch.set_num_threads(1)
    pipe = Pipeline(device=device)
    tags = make_tags(pipe.vocab, collection="chorale")
    frames = pipe.backend.frames_for(None)  # the model's clip, in mel frames
    ctrl = get_control("intensity", target=intensity_preset("linear-rise", frames, -38, -18))
    x = pipe.backend.noise(1, frames, 0).requires_grad_(True)
    cuda = pipe.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss()
    peak = [base]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.001)

    th = None if cuda else threading.Thread(target=watch, daemon=True)
    if th:
        th.start()
    t0 = time.perf_counter()
    loss = ctrl.loss(pipe.sample(x, tags, steps=steps, guidance=3.0, checkpoint=checkpoint)).sum()
    loss.backward()
    wall = time.perf_counter() - t0
    if th:
        stop.set()
        th.join()
    else:
        torch.cuda.synchronize()
        peak[0] = torch.cuda.max_memory_allocated()
    assert torch.isfinite(x.grad).all()
    return {"steps": steps, "checkpoint": checkpoint, "peak_above_baseline_mib": (peak[0] - base) / 2**20,
            "seconds": wall, "measure": "cuda_allocated" if cuda else "rss"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--worker", nargs=2, metavar=("STEPS", "CHECKPOINT"))
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(int(a.worker[0]), a.worker[1] == "1", a.device)))
        return
    rows = []
    for steps, ck in CONFIGS:
        out = subprocess.run([sys.executable, __file__, "--device", a.device, "--worker", str(steps), str(int(ck))],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    by = {(r["steps"], r["checkpoint"]): r["peak_above_baseline_mib"] for r in rows}
    print(json.dumps({
        "runs": rows,
        "ratio_40_vs_10_checkpointed": by[(40, True)] / by[(10, True)],
        "ratio_no_checkpoint_vs_checkpoint_20_steps": by[(20, False)] / by[(20, True)],
        "targets": {"ratio_40_vs_10_checkpointed": "<= 1.25", "ratio_no_checkpoint_vs_checkpoint_20_steps": ">= 3"},
    }, indent=1))


if __name__ == "__main__":
    main()
