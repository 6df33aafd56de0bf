"""Shared rules for the property-based (hypothesis) tests of the user-facing parsers.

Every parser fed arbitrary input may only return a valid result or raise a DittoError with a
non-empty message: any other exception is a bug (the CLI would print a traceback), and so is a
hang. Budget: the "ci" profile (tests/conftest.py, the default) runs a fixed, derandomized set
of examples per test, a few tens of seconds for all of them on 2 busy cores. A deeper search:

    HYPOTHESIS_PROFILE=deep python -m pytest -q tests -k fuzz
"""

from __future__ import annotations

import contextlib
import signal

from hypothesis import settings

from dittomusic.errors import DittoError

HANG_S = 30  # one example may not run longer than this
CI_EXAMPLES = 40  # the "ci" profile's max_examples (tests/conftest.py)


def fewer(n: int) -> settings:
    """For a slow test: n examples under the "ci" profile, as many times more under another."""
    return settings(max_examples=max(1, round(n * settings.default.max_examples / CI_EXAMPLES)))


def accepts_or_refuses(fn, *args, **kwargs):
    """fn's result, or None if it raised a DittoError that says something. Anything else escapes."""
    try:
        return fn(*args, **kwargs)
    except DittoError as e:
        assert str(e).strip(), f"{fn.__name__} raised a DittoError without a message"
        return None


@contextlib.contextmanager
def no_hang(seconds: int = HANG_S):
    """Fail (instead of hanging the suite) if the block runs longer than `seconds` (main thread, POSIX)."""

    def boom(signum, frame):
        raise TimeoutError(f"no result after {seconds} s: a parser hangs")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
