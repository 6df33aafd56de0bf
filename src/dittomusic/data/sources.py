"""Where pieces come from: music21's bundled corpus, or a folder of the user's scores.

A piece is one tune or movement. ABC files often hold many tunes (`X:` numbers); each
becomes its own piece, so splits and resume work per tune, not per file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dittomusic.errors import DittoError

SCORE_SUFFIXES = (".mid", ".midi", ".xml", ".musicxml", ".mxl", ".abc", ".krn")

# music21 corpus folder -> collection tag. Folders not listed (demos, theory exercises,
# lead sheets, Roman-numeral analyses, single-piece composers) are left out so every
# collection has enough pieces to learn and to split.
CORPUS_COLLECTIONS: dict[str, str] = {
    "bach": "chorale",
    "palestrina": "renaissance polyphony",
    "josquin": "renaissance polyphony",
    "lusitano": "renaissance polyphony",
    "monteverdi": "renaissance polyphony",
    "trecento": "medieval polyphony",
    "ciconia": "medieval polyphony",
    "luca": "medieval polyphony",
    "ryansMammoth": "Irish folk tune",
    "oneills1850": "Irish folk tune",
    "essenFolksong": "folk song",
    "airdsAirs": "folk song",
    "miscFolk": "folk song",
    "nottingham-dataset": "folk song",
    "beethoven": "classical string quartet",
    "haydn": "classical string quartet",
    "mozart": "classical string quartet",
}


@dataclass(frozen=True)
class PieceRef:
    piece_id: str  # stable across machines: "<source>:<relative path>[#<tune number>]"
    path: str
    collection: str
    number: int | None = None  # ABC tune number (X: field)

    @property
    def title(self) -> str:
        name = Path(self.path).stem
        return f"{name} #{self.number}" if self.number is not None else name


_X_RE = re.compile(r"^X:\s*(\d+)", re.MULTILINE)


def abc_tune_numbers(path: Path) -> list[int]:
    text = path.read_text(errors="replace")
    nums = [int(m.group(1)) for m in _X_RE.finditer(text)]
    # music21 selects tunes by number, so duplicated numbers cannot be told apart
    seen: set[int] = set()
    return [n for n in nums if not (n in seen or seen.add(n))]


def _refs_for_file(path: Path, rel: str, prefix: str, collection: str) -> list[PieceRef]:
    if path.suffix.lower() == ".abc":
        nums = abc_tune_numbers(path)
        if len(nums) > 1:
            return [PieceRef(f"{prefix}:{rel}#{n}", str(path), collection, n) for n in nums]
    return [PieceRef(f"{prefix}:{rel}", str(path), collection)]


def music21_corpus_dir() -> Path:
    import music21

    return Path(music21.__file__).parent / "corpus"


def corpus_pieces(collections: list[str] | None = None) -> list[PieceRef]:
    """All usable pieces of music21's bundled corpus, labelled by collection."""
    base = music21_corpus_dir()
    refs: list[PieceRef] = []
    for folder, collection in sorted(CORPUS_COLLECTIONS.items()):
        if collections and collection not in collections:
            continue
        d = base / folder
        if not d.is_dir():
            continue
        for p in sorted(d.rglob("*")):
            if p.suffix.lower() in SCORE_SUFFIXES and p.is_file():
                refs.extend(_refs_for_file(p, p.relative_to(base).as_posix(), "music21", collection))
    return refs


def folder_pieces(root: str | Path, collection: str | None = None) -> list[PieceRef]:
    """Pieces from a user folder. The collection tag is `collection` if given, else the
    file's top-level subfolder name, else the folder's own name."""
    root = Path(root)
    if not root.is_dir():
        raise DittoError(f"--source {root} is not a directory; pass a folder of MIDI, MusicXML or ABC files")
    refs: list[PieceRef] = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.suffix.lower() not in SCORE_SUFFIXES:
            continue
        rel = p.relative_to(root)
        coll = collection or (rel.parts[0] if len(rel.parts) > 1 else root.name)
        refs.extend(_refs_for_file(p, rel.as_posix(), f"user/{root.name}", coll))
    if not refs:
        raise DittoError(
            f"--source {root} holds no score files; accepted suffixes: {', '.join(SCORE_SUFFIXES)}"
        )
    return refs
