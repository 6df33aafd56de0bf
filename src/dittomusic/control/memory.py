"""Peak memory of what autograd keeps for backward, on any device: the bytes of the distinct
tensors saved by the graph (forward) and by any graph built during backward (a checkpoint's
recomputation, DOODL's rebuilt steps), at their peak. It is the part of a method's memory that
grows with the number of sampler steps; torch.cuda.max_memory_allocated also counts the
model, the batch and the allocator's caching, and has no CPU counterpart.

    with SavedTensorMeter() as m:
        loss(render(x)).sum().backward()
    m.peak_bytes
"""

from __future__ import annotations

import weakref

import torch


class SavedTensorMeter:
    def __init__(self):
        self.live: dict[int, list] = {}  # storage pointer -> [bytes, references]
        self.current = 0
        self.peak_bytes = 0
        self._hooks = None

    def _pack(self, t: torch.Tensor):
        key = t.untyped_storage().data_ptr()
        entry = self.live.get(key)
        if entry is None:
            entry = self.live[key] = [t.untyped_storage().nbytes(), 0]
            self.current += entry[0]
            self.peak_bytes = max(self.peak_bytes, self.current)
        entry[1] += 1
        holder = _Held(t)
        weakref.finalize(holder, self._release, key)
        return holder

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[key]

    @staticmethod
    def _unpack(holder):
        return holder.t

    def __enter__(self) -> "SavedTensorMeter":
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


class _Held:
    __slots__ = ("t", "__weakref__")

    def __init__(self, t: torch.Tensor):
        self.t = t
