"""The `dittomusic` command group and what its command modules share: error handling at the CLI
boundary (DittoError -> one line), option types, the tag and vocoder options, the fast exit."""

from __future__ import annotations

import functools
import logging
import math
import os
import sys

import click

from dittomusic import __version__
from dittomusic.errors import DittoError


def friendly(fn):
    """Turn user-fixable errors into one clear line instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except DittoError as e:
            raise click.ClickException(str(e)) from None

    return wrapper


class FiniteFloat(click.FloatRange):
    """A float option that refuses NaN and infinity, which click's FLOAT and FloatRange let
    through ("--guidance nan" used to run and write audio). Optional bounds as FloatRange."""

    def __init__(self, min: float | None = None, max: float | None = None, min_open: bool = False,
                 max_open: bool = False) -> None:
        super().__init__(min=min, max=max, min_open=min_open, max_open=max_open)
        self.name = "float" if min is None and max is None else "float range"

    def convert(self, value, param, ctx):
        rv = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(rv):
            rng = self._describe_range()
            self.fail(f"{value!r} is not a finite number; give a real number"
                      + (f" in the range {rng}" if rng else "") + " (NaN and infinity are not accepted).", param, ctx)
        return super().convert(rv, param, ctx)

    def _describe_range(self) -> str:
        return "" if self.min is None and self.max is None else super()._describe_range()


FINITE = FiniteFloat()


def int_list(value: str | None, option: str, example: str) -> list[int] | None:
    """A comma-separated list of positive integers, or a clear error."""
    if value is None:
        return None
    try:
        out = [int(c) for c in value.split(",")]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise DittoError(f"{option} {value!r}: give comma-separated positive integers, e.g. {example}")
    return out


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dittomusic")
@click.option("-v", "--verbose", is_flag=True, help="More logging.")
def cli(verbose: bool) -> None:
    """dittomusic: controllable music generation by optimizing diffusion noise latents."""
    setup_logging(verbose)


def vocoder_option(fn):
    return click.option(
        "--vocoder", default=None,
        help="neural, griffinlim, or a neural vocoder .safetensors file (or training run folder) "
             "[default: the bundled neural vocoder if installed, else griffinlim].")(fn)


def precision_option(fn):
    from dittomusic.utils import PRECISIONS

    return click.option(
        "--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
        help="The network's and decoder's arithmetic: bf16 autocast, fp32, or auto (bf16 where the device has it "
             "natively: a CPU with AMX / AVX512-BF16, a bf16 GPU; else fp32).")(fn)


TAG_OPTIONS = ("caption", "collection", "instruments", "tempo", "mode", "unconditional")


def tag_options(fn):
    for opt in reversed([
        click.option("--caption", default=None,
                     help='Free text mapped to tags, e.g. "a lively Irish reel on fiddle in D major" (with a '
                          'text-conditioned control --backend such as diffusers:DIR, the text prompt itself).'),
        click.option("--collection", default=None, help="Style: chorale, Irish folk tune, folk song, ... (see --list-tags)."),
        click.option("--instruments", default=None,
                     help="Comma-separated, e.g. violin,cello (families like strings work too)."),
        click.option("--tempo", default=None, help="BPM (e.g. 120) or a bucket: slow, moderate, fast, very fast."),
        click.option("--mode", default=None, help="major or minor."),
        click.option("--unconditional", is_flag=True, help="Ignore all tags."),
    ]):
        fn = opt(fn)
    return fn


_FAST_EXIT = False


def fast_exit_ok() -> None:
    """Called by a command whose outputs are all written and closed: main() may then skip the
    interpreter's teardown."""
    global _FAST_EXIT
    _FAST_EXIT = True


def main() -> None:
    global _FAST_EXIT
    _FAST_EXIT = False
    try:
        cli(prog_name="dittomusic")
    except SystemExit as e:
        if not _FAST_EXIT:
            raise
        code = e.code
    else:  # pragma: no cover - standalone click always exits through SystemExit
        code = 0
    # Unloading torch and its extension modules at exit took 0.15-0.3 s of a cold
    # `dittomusic generate`; the outputs are already closed (atomic renames), so flush and go.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


if __name__ == "__main__":
    main()
