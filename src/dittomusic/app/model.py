"""The app's model: its file checked at start from the safetensors header alone, then the Pipeline
loaded once per process in a background thread, so the page is served before torch and the model
are loaded (issue 22). A job that arrives first waits for it, its progress saying so; a load that
failed is a message in the page for every job, and in the server's log once.

    check_model_file(None)                          # the bundled model's header: no torch
    model = ModelLoader(None, "cpu", "griffinlim")  # nothing loaded yet
    model.start()                                   # done by the page's load event (ui.py)
    pipe = model.get()                              # waits (starting it if need be); a DittoError
                                                    # if the load failed"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from typing import Callable

from dittomusic.checkpoint import check_model_meta, model_file, read_meta
from dittomusic.errors import DittoError

log = logging.getLogger("dittomusic.app")
LOADING = "loading the model…"
# imported once the model is in, so that the first job or target preview does not wait for them
PRELOAD = ("dittomusic.control.runs", "dittomusic.control.tasks", "dittomusic.control.plots", "dittomusic.spectrogram",
           "matplotlib.pyplot")


def check_model_file(model_path=None) -> dict:
    """The model file's metadata, from its header: a missing file, or one that is not a diffusion
    model with tags, is the DittoError loading it would raise, without loading it."""
    path = model_file(model_path)
    return check_model_meta(read_meta(path), path, tags=str(model_path or "the bundled model"))


class ModelLoader:
    """generate.Pipeline(model_path, device, vocoder), loaded once: by start() in a background
    thread, or by the first get() if nothing started it. `loaded(pipe)` wraps one already loaded."""

    def __init__(self, model_path=None, device: str | None = None, vocoder: str | None = None):
        self.model_path, self.device, self.vocoder = model_path, device, vocoder
        self._pipe = None
        self._error: str | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @classmethod
    def loaded(cls, pipe) -> ModelLoader:
        m = cls(pipe.model_file, str(pipe.device), None)
        m._pipe = pipe
        m._done.set()
        return m

    @property
    def ready(self) -> bool:
        return self._done.is_set()

    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._done.is_set():
                self._thread = threading.Thread(target=self._load, name="dittomusic-model", daemon=True)
                self._thread.start()

    def _load(self) -> None:
        t0 = time.perf_counter()
        try:
            from dittomusic.generate import Pipeline

            self._pipe = Pipeline(self.model_path, self.device, self.vocoder)
        except DittoError as e:
            self._error = f"the model could not be loaded: {e}"
            log.error("%s", self._error)
        except Exception as e:  # a bug or the environment (a device that is not there): details in the log
            log.exception("loading the model failed")
            self._error = (f"the model could not be loaded ({type(e).__name__}: {str(e)[:300]}); the details "
                           "are in the server's log")
        finally:
            self._done.set()
        if self._pipe is None:
            return
        log.info("model loaded in %.1f s", time.perf_counter() - t0)
        try:
            import matplotlib

            matplotlib.use("Agg")  # as control/plots.py sets it before each plot
            for name in PRELOAD:
                importlib.import_module(name)
        except Exception:  # the job that needs it imports it again and reports it
            log.debug("preloading failed", exc_info=True)

    def wait(self, progress: Callable | None = None, cancelled: Callable[[], bool] | None = None) -> bool:
        """Until the model is loaded (True, or the DittoError of a failed load), or `cancelled()`
        turns true first (False). progress(0, desc=...) is told that it is loading."""
        if not self._done.is_set():
            self.start()
            if progress is not None:
                progress(0, desc=LOADING)
            while not self._done.wait(0.05):
                if cancelled is not None and cancelled():
                    return False
        if self._error is not None:
            raise DittoError(self._error)
        return True

    def get(self):
        """The loaded Pipeline (waits for it)."""
        self.wait()
        return self._pipe
