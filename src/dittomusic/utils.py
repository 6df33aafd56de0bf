"""Small shared helpers."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it over `path` only if the block succeeds.

    Readers never see a half-written file, and a crash leaves no partial output behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        # mkstemp (and writers that recreate the file) leave 0600; outputs get the usual mode
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def stable_hash(*parts: object) -> int:
    """A process-independent 64-bit hash (Python's hash() is salted per process)."""
    h = hashlib.sha1("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "little")


def resolve_device(device: str | None = None):
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


PRECISIONS = ("auto", "fp32", "bf16")


def fast_bf16(device) -> bool:
    """Whether the device runs bfloat16 matmuls natively: a CUDA GPU that supports bf16, or a CPU with AMX or
    AVX512-BF16 (elsewhere bf16 is emulated and slower than fp32)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":  # torch exposes the CPU's ISA only through these private probes
        probes = [getattr(torch.cpu, n, None) for n in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
        return any(bool(f()) for f in probes if f is not None)
    return False


def machine_info() -> dict:
    """What a wall time depends on: the CPU model, its cores, torch's threads and whether bf16 is native.
    Timing benchmarks print it, because the same code measured 1.5x apart on two 2-core machines."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "native_bf16_cpu": fast_bf16("cpu"), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def resolve_precision(precision: str | None, device) -> str:
    """"auto" (or None) -> "bf16" where the device has native bf16 (fast_bf16), else "fp32"."""
    from dittomusic.errors import DittoError

    if precision not in (None, *PRECISIONS):
        raise DittoError(f"unknown precision {precision!r}; choose from: {', '.join(PRECISIONS)}")
    if precision in (None, "auto"):
        return "bf16" if fast_bf16(device) else "fp32"
    return precision


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


def file_sha1(path) -> str:
    """Hex sha1 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
