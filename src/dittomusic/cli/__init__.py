"""The `dittomusic` command: one module per command group; core.py holds the group and what they share.

Command modules import torch and the rest inside the commands, so `dittomusic --help` stays light."""

from . import clap, control, dataset, evaluate, generate, train, ui, vocoder  # noqa: F401  (each adds its commands)
from .core import cli, main

__all__ = ["cli", "main"]
