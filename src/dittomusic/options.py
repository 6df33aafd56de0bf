"""Command-line options declared by what owns them (a task, a method), without click or torch, so
that the CLI builds them from the registries and a new task or method plugs in without editing it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    """`--flag` stored as options.<dest>. kind: "str", "float" (finite), "int", "path" (a file) or
    "choice" (one of `choices`); lo / hi bound an int."""

    flag: str
    dest: str
    default: Any = None
    help: str = ""
    kind: str = "str"
    choices: tuple[str, ...] = ()
    lo: int | None = None
    hi: int | None = None
