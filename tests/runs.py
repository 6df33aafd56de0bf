"""Training-run helpers shared by the tests of every trainer (base model, vocoder, CLAP): the loss
history, a child process's environment, and the kill-mid-run-then-resume check of exact resume."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import torch

from dittomusic.checkpoint import load_tensors

CKPT = "checkpoint.safetensors"


def losses(run: Path) -> list[float]:
    return [h["loss"] for h in json.loads((Path(run) / "history.json").read_text()) if "loss" in h]


def child_env() -> dict:
    """One thread, unbuffered, and no torchrun variables inherited from a DDP test."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    return env


def kill_after_checkpoint(cmd: list[str], run: Path, steps: int, min_step: int = 3, timeout: float = 120) -> int:
    """Run a training command that checkpoints every step, SIGKILL it once a checkpoint of at least
    `min_step` exists, and return the step it was killed at (asserted to be before the end)."""
    ckpt = Path(run) / CKPT
    proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and load_tensors(ckpt)[1]["step"] >= min_step:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    err = proc.communicate()[1]
    assert ckpt.exists(), err.decode()[-2000:]
    killed_at = load_tensors(ckpt)[1]["step"]
    assert min_step <= killed_at < steps, "the run finished before it could be killed; make it longer"
    return killed_at


def assert_same_run(ref: Path, run: Path) -> None:
    """The same loss history and bit-identical final checkpoints."""
    assert losses(run) == losses(ref)
    a, b = load_tensors(Path(ref) / CKPT)[0], load_tensors(Path(run) / CKPT)[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
