"""User-facing errors: the CLI prints these as one clear message, never a traceback."""


class DittoError(Exception):
    """An error caused by input or environment that the user can fix."""


class SoundfontNotFound(DittoError):
    pass


class PieceError(DittoError):
    """A piece of music that cannot be parsed or rendered; builders skip it and log why."""
