"""Jobs of the app: each run gets an id before it enters gradio's queue (one job at a time on
the model, first come first served), so its cancel button can reach it while it waits as well
as while it runs. A running optimization stops between iterations (optimize_latent's callback)
and keeps its best iterate so far; a waiting one never starts."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field

from dittomusic.errors import DittoError


class JobCancelled(DittoError):
    """Raised where a cancelled job cannot stop with a result (before it starts, mid-sampling)."""


@dataclass
class Job:
    id: str
    cancelled: threading.Event = field(default_factory=threading.Event)
    started: bool = False
    iteration: int = -1  # the optimizer's last evaluated iterate (-1: none yet)

    def check(self) -> None:
        if self.cancelled.is_set():
            raise JobCancelled("cancelled")

    def optimizer_callback(self, total: int, report=None):
        """optimize_latent's callback: reports (iteration, total, mean loss), stops once cancelled."""

        def callback(info) -> bool:
            self.iteration = int(info["iter"])
            if report is not None:
                report(self.iteration, total, float(info["loss"].float().mean()))
            return self.cancelled.is_set()

        return callback

    def sampler_callback(self, total: int, report=None):
        """A sampler's per-step callback: reports (step, total); raises JobCancelled once cancelled."""
        steps = itertools.count(1)

        def callback(info) -> None:
            if report is not None:
                report(next(steps), total)
            self.check()

        return callback


class JobBoard:
    """The jobs submitted and not yet finished, by id (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._ids = itertools.count(1)

    def submit(self, kind: str) -> str:
        with self._lock:
            job_id = f"{next(self._ids):04d}-{kind}"
            self._jobs[job_id] = Job(job_id)
            return job_id

    def start(self, job_id: str | None) -> Job:
        """The job, marked running; JobCancelled if it was cancelled while it waited."""
        with self._lock:
            job = self._jobs.get(job_id or "")
            if job is None:
                raise DittoError("this job is unknown to the server (was the app restarted?); press the button again")
            if job.cancelled.is_set():
                del self._jobs[job.id]
                raise JobCancelled("cancelled before it started")
            job.started = True
            return job

    def cancelled(self, job_id: str | None) -> bool:
        """Whether a job not yet finished was cancelled."""
        with self._lock:
            job = self._jobs.get(job_id or "")
            return job is not None and job.cancelled.is_set()

    def finish(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def cancel(self, job_id: str | None) -> str:
        """Cancel a waiting or running job; a message for the page."""
        with self._lock:
            job = self._jobs.get(job_id or "")
            if job is None:
                return "Nothing to cancel."
            job.cancelled.set()
            return ("Cancelling: the optimization stops after its current iteration and keeps its best result."
                    if job.started else "Cancelled: the job will not start.")

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)
