"""Captions for CLAP training, generated from each clip's metadata.

A clip gets several phrasings (`Template`s filled with randomly chosen synonyms): instrument
names and families, tempo words and BPM, key and mode, collection, the clip's loudness trend,
and partial descriptions that mention only some of these. Some templates and some synonyms are
*held out*: they never appear in a training caption, so the eval can measure whether the model
understands a description it was not trained on (the sentence encoder knows "pipe organ" is a
church organ; the projection has to carry that over).

Every caption also records what it claims (a `Constraint`), so training can treat all clips of
a batch that a caption truthfully describes as positives ("a chorale" fits many clips), and the
card can count a retrieval as right when the retrieved clip matches the description.

The loudness trend is measured on the clip's own mel (the dataset's `dynamics` field names the
envelope of a whole render, of which a 6 s clip sees a small part).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dittomusic.data.arrange import PITCH_CLASSES as TONICS
from dittomusic.errors import DittoError
from dittomusic.utils import atomic_write_text, stable_hash

# ----------------------------------------------------------------------------- vocabulary
# value -> (phrasings used in training, phrasings held out for the eval)
COLLECTION_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Irish folk tune": (("Irish folk tune", "Irish jig", "Irish reel", "Irish traditional tune"),
                        ("Celtic dance tune",)),
    "chorale": (("chorale", "four-part chorale", "Bach chorale"), ("Lutheran hymn",)),
    "classical string quartet": (("classical string quartet", "string quartet movement", "classical quartet"),
                                 ("Haydn-style quartet",)),
    "folk song": (("folk song", "folk melody", "traditional song"), ("simple ballad tune",)),
    "medieval polyphony": (("medieval polyphony", "medieval piece", "piece of medieval music"),
                           ("Ars Nova part-song",)),
    "renaissance polyphony": (("renaissance polyphony", "renaissance motet", "renaissance part-song"),
                              ("Palestrina-style motet",)),
}
INSTRUMENT_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "church organ": (("church organ",), ("pipe organ",)),
    "reed organ": (("reed organ",), ("harmonium",)),
    "contrabass": (("contrabass", "double bass"), ("upright bass",)),
    "string ensemble": (("string ensemble", "string section"), ("string orchestra",)),
    "french horn": (("French horn",), ("orchestral horn",)),
    "tin whistle": (("tin whistle",), ("penny whistle",)),
    "acoustic guitar": (("acoustic guitar", "guitar"), ("nylon-string guitar",)),
    "choir": (("choir", "vocal ensemble"), ("chorus of singers",)),
    "vibraphone": (("vibraphone",), ("vibes",)),
    "fiddle": (("fiddle",), ("folk fiddle",)),
}
FAMILY_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "keyboard": (("keyboard instruments", "keyboards"), ("keys",)),
    "organ": (("organs and free reeds", "organ-like instruments"), ("reed instruments",)),
    "strings": (("bowed strings", "string instruments"), ("the string family",)),
    "brass": (("brass", "brass instruments"), ("horns and trombones",)),
    "woodwinds": (("woodwinds", "woodwind instruments"), ("wind instruments",)),
    "plucked": (("plucked strings", "plucked instruments"), ("plucked string instruments",)),
    "mallets": (("mallet percussion", "mallets"), ("tuned percussion",)),
    "choir": (("voices", "singers"), ("human voices",)),
}
TEMPO_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "slow": (("slow", "calm", "unhurried"), ("leisurely",)),
    "moderate": (("moderate", "medium-tempo", "steady-paced"), ("walking-pace",)),
    "fast": (("fast", "lively", "brisk"), ("upbeat",)),
    "very fast": (("very fast", "rapid", "racing"), ("breakneck",)),
}
MODE_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "major": (("major",), ("bright major",)),
    "minor": (("minor",), ("dark minor",)),
}
TREND_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "rising": (("getting louder", "with a crescendo", "building up"), ("growing in volume",)),
    "falling": (("getting softer", "with a diminuendo", "dying away"), ("fading out",)),
    "steady": (("at an even volume", "with steady dynamics"), ("at a constant loudness",)),
}
TRENDS = tuple(TREND_WORDS)
_TONIC_SPOKEN = {"C#": "C-sharp", "Eb": "E-flat", "F#": "F-sharp", "Ab": "A-flat", "Bb": "B-flat"}


@dataclass(frozen=True)
class Template:
    id: str
    text: str  # fields: {coll} {inst} {fam} {tempo} {bpm} {key} {mode} {dyn}
    heldout: bool = False
    full: bool = False  # names collection, instruments, tempo and key: the retrieval eval's captions

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(re.findall(r"\{(\w+)\}", self.text))

    def pattern(self) -> re.Pattern:
        """A regex matching any caption this template can produce (for the held-out tests)."""
        parts = re.split(r"\{\w+\}", self.text)
        # "a" before a vowel became "an" (fill)
        rx = ".+?".join(re.sub(r"(?<![A-Za-z])([Aa])\\ ", r"\1n?\\ ", re.escape(p)) for p in parts)
        return re.compile(rf"^{rx}$", re.IGNORECASE)


TEMPLATES: tuple[Template, ...] = (
    # training phrasings, from full descriptions down to a single attribute
    Template("full", "A {tempo} {coll} in {key}, played by {inst}, at {bpm}.", full=True),
    Template("inst_first", "{inst} playing a {tempo} {coll} in {key}, {dyn}.", full=True),
    Template("tags", "{coll}; {inst}; {bpm}; {key}"),
    Template("for", "A {coll} for {inst}."),
    Template("on_family", "A {mode} {coll} on {fam}, {dyn}."),
    Template("piece", "A {tempo} piece in {key} played by {inst}."),
    Template("family_music", "{tempo} music for {fam} at {bpm}."),
    Template("coll_only", "A {coll}."),
    Template("inst_only", "{inst}."),
    Template("mode_dyn", "A {coll} in a {mode} key, {dyn}."),
    Template("tempo_inst", "{inst}, {tempo}, {dyn}."),
    # held out of training
    Template("h_recording", "A recording of {inst} performing a {coll}, {tempo} and in {key}.", heldout=True,
             full=True),
    Template("h_this_is", "This is a {coll} with {fam}; the tempo is {bpm}, {dyn}.", heldout=True),
    Template("h_want", "I want to hear {inst} play something {tempo} in a {mode} key.", heldout=True),
    Template("h_arranged", "{coll} arranged for {fam}.", heldout=True),
)
BY_ID = {t.id: t for t in TEMPLATES}


# ----------------------------------------------------------------------------- what a caption claims
@dataclass(frozen=True)
class Attrs:
    """What is true of a clip, as integers (vocab indices, bit masks over vocab lists)."""

    coll: int
    bucket: int
    mode: int
    tonic: int
    trend: int
    bpm: int
    inst: int  # bit i: vocab.instruments[i] plays
    fam: int


@dataclass(frozen=True)
class Constraint:
    """What a caption says; -1 / 0 masks / the full BPM range mean "not mentioned"."""

    coll: int = -1
    bucket: int = -1
    mode: int = -1
    tonic: int = -1
    trend: int = -1
    bpm_lo: int = 0
    bpm_hi: int = 1000
    inst: int = 0  # these instruments must all play
    fam: int = 0

    def as_list(self) -> list[int]:
        return [self.coll, self.bucket, self.mode, self.tonic, self.trend, self.bpm_lo, self.bpm_hi, self.inst,
                self.fam]


def matches(cons: np.ndarray, attrs: np.ndarray) -> np.ndarray:
    """[C, 9] constraints x [A, 8] attributes -> [C, A] bool: does caption c truthfully describe clip a."""
    c, a = cons[:, None, :], attrs[None, :, :]
    ok = np.ones((len(cons), len(attrs)), dtype=bool)
    for k in range(5):  # coll, bucket, mode, tonic, trend
        ok &= (c[..., k] < 0) | (c[..., k] == a[..., k])
    ok &= (c[..., 5] <= a[..., 5]) & (a[..., 5] <= c[..., 6])
    ok &= (a[..., 6] & c[..., 7]) == c[..., 7]
    ok &= (a[..., 7] & c[..., 8]) == c[..., 8]
    return ok


# ----------------------------------------------------------------------------- the clip's loudness trend
def loudness_trend(mel: np.ndarray, threshold_db: float = 4.0) -> str:
    """rising / falling / steady: the change of a line fitted to the clip's frame loudness (dB).

    mel: [n_mels, frames] scaled log-mel in [-1, 1]. threshold_db is the change over the clip
    that counts as a crescendo (4 dB: clearly audible; measured on 300 clips of data/full, ~1/6 of
    the clips fall on each side: the 10th/90th percentiles of the change are -5.8/+5.2 dB).
    """
    from dittomusic.audio.mel import MelConfig

    cfg = MelConfig()
    db = (np.clip(mel, -1, 1) + 1) * 0.5 * cfg.db_range + cfg.db_min
    loud = 10 * np.log10(np.power(10.0, db / 10).sum(0) + 1e-12)
    t = np.linspace(-0.5, 0.5, len(loud))
    change = float(np.dot(t - t.mean(), loud - loud.mean()) / np.dot(t - t.mean(), t - t.mean()))
    return "rising" if change > threshold_db else "falling" if change < -threshold_db else "steady"


def clip_attrs(row: dict, trend: str, vocab) -> Attrs:
    from dittomusic.data.arrange import transpose_name

    return Attrs(vocab.collections.index(row["collection"]), vocab.tempo_buckets.index(row["tempo_bucket"]),
                 vocab.modes.index(row["mode"]), TONICS.index(transpose_name(row["tonic"], 0)), TRENDS.index(trend),
                 int(row["tempo_bpm"]),
                 sum(1 << vocab.instruments.index(i) for i in row["instruments"] if i in vocab.instruments),
                 sum(1 << vocab.families.index(f) for f in row["families"] if f in vocab.families))


# ----------------------------------------------------------------------------- filling templates
def _pick(rng, words: dict, value: str, heldout: bool) -> str:
    train, held = words.get(value, ((value,), ()))
    pool = list(train) + (list(held) if heldout else [])
    return pool[rng.integers(len(pool))]


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def fill(t: Template, row: dict, trend: str, vocab, rng: np.random.Generator,
         heldout_words: bool = False) -> tuple[str, Constraint]:
    """One caption of clip `row` in template t, and what it claims. heldout_words: synonyms may be held-out ones."""
    from dittomusic.data.arrange import transpose_name

    vals: dict[str, str] = {}
    c: dict[str, int] = {}
    f = set(t.fields)
    if "coll" in f:
        vals["coll"] = _pick(rng, COLLECTION_WORDS, row["collection"], heldout_words)
        c["coll"] = vocab.collections.index(row["collection"])
    if "inst" in f:
        insts = list(row["instruments"])
        if len(insts) > 1 and not t.full and rng.random() < 0.3:  # a partial list: "... with a cello"
            insts = [insts[j] for j in sorted(rng.choice(len(insts), rng.integers(1, len(insts)), replace=False))]
        vals["inst"] = _join([_pick(rng, INSTRUMENT_WORDS, i, heldout_words) for i in insts])
        c["inst"] = sum(1 << vocab.instruments.index(i) for i in insts)
    if "fam" in f:
        fams = list(row["families"])
        vals["fam"] = _join([_pick(rng, FAMILY_WORDS, x, heldout_words) for x in fams])
        c["fam"] = sum(1 << vocab.families.index(x) for x in fams)
    if "tempo" in f:
        vals["tempo"] = _pick(rng, TEMPO_WORDS, row["tempo_bucket"], heldout_words)
        c["bucket"] = vocab.tempo_buckets.index(row["tempo_bucket"])
    if "bpm" in f:
        bpm = int(row["tempo_bpm"])
        if rng.random() < 0.3:  # a rounded tempo: "about 140 BPM" claims +-5
            r = int(round(bpm / 10) * 10)
            vals["bpm"], c["bpm_lo"], c["bpm_hi"] = f"about {r} BPM", r - 5, r + 5
        else:
            unit = ("BPM", "beats per minute")[int(rng.integers(2))]
            vals["bpm"], c["bpm_lo"], c["bpm_hi"] = f"{bpm} {unit}", bpm - 2, bpm + 2
    if "key" in f or "mode" in f:
        mode = row["mode"]
        c["mode"] = vocab.modes.index(mode)
        if "key" in f:
            tonic = transpose_name(row["tonic"], 0)
            name = _TONIC_SPOKEN.get(tonic, tonic) if rng.random() < 0.5 else tonic
            vals["key"] = (f"the key of {name} {mode}" if rng.random() < 0.3 else f"{name} {mode}")
            c["tonic"] = TONICS.index(tonic)
        if "mode" in f:
            vals["mode"] = _pick(rng, MODE_WORDS, mode, heldout_words)
    if "dyn" in f:
        vals["dyn"] = _pick(rng, TREND_WORDS, trend, heldout_words)
        c["trend"] = TRENDS.index(trend)
    text = t.text.format(**vals)
    text = re.sub(r"\b([Aa]) (?=[AEIOUaeiou])", lambda m: m.group(1) + "n ", text)
    text = text[0].upper() + text[1:]
    return text, Constraint(**c)


# ----------------------------------------------------------------------------- the caption table
@dataclass
class CaptionConfig:
    per_clip: int = 5  # training phrasings per train clip (distinct templates)
    seed: int = 0
    trend_db: float = 4.0


def _row_texts(rng, templates, row, trend, vocab, n, heldout_words, table) -> list[int]:
    picks = rng.choice(len(templates), size=min(n, len(templates)), replace=False)
    return [table.add(*fill(templates[int(j)], row, trend, vocab, rng, heldout_words)) for j in sorted(picks)]


class _Table:
    def __init__(self):
        self.texts: list[str] = []
        self.cons: list[list[int]] = []
        self.index: dict[str, int] = {}

    def add(self, text: str, cons: Constraint) -> int:
        i = self.index.get(text)
        if i is None:
            i = self.index[text] = len(self.texts)
            self.texts.append(text)
            self.cons.append(cons.as_list())
        return i


def build_captions(data: str | Path, cfg: CaptionConfig = CaptionConfig(), progress: bool = True) -> dict:
    """The caption table of a built dataset (see module doc): a JSON-able dict.

    train clips: cfg.per_clip phrasings from training templates and synonyms ("train").
    val/test clips: one full description in a training template ("seen"), one in a held-out
    template with held-out synonyms allowed ("heldout"), and one of every held-out template ("heldout_all").
    """
    from tqdm.auto import tqdm

    from dittomusic.data.dataset import TagVocab, read_clips
    from dittomusic.data.stats import load_clip

    vocab = TagVocab.load(data)
    rows = read_clips(data)
    frames = json.loads((Path(data) / "plan.json").read_text())["content"]["mel"]["clip_frames"]
    train_t = [t for t in TEMPLATES if not t.heldout]
    seen_full = [t for t in train_t if t.full]
    held_t = [t for t in TEMPLATES if t.heldout]
    held_full = [t for t in held_t if t.full]
    table = _Table()
    splits: dict[str, dict[str, list]] = {}
    for row in tqdm(rows, desc="captions", disable=not progress):
        trend = loudness_trend(load_clip(data, row, frames), cfg.trend_db)
        rng = np.random.default_rng(stable_hash(cfg.seed, "captions", row["clip_id"]))
        s = splits.setdefault(row["split"], {"clip_ids": [], "attrs": [], "train": [], "seen": [], "heldout": [],
                                             "heldout_all": []})
        s["clip_ids"].append(row["clip_id"])
        a = clip_attrs(row, trend, vocab)
        s["attrs"].append([a.coll, a.bucket, a.mode, a.tonic, a.trend, a.bpm, a.inst, a.fam])
        if row["split"] == "train":
            s["train"].append(_row_texts(rng, train_t, row, trend, vocab, cfg.per_clip, False, table))
        else:
            s["seen"].append(_row_texts(rng, seen_full, row, trend, vocab, 1, False, table))
            s["heldout"].append(_row_texts(rng, held_full, row, trend, vocab, 1, True, table))
            s["heldout_all"].append(_row_texts(rng, held_t, row, trend, vocab, len(held_t), True, table))
    for s in splits.values():  # only the keys a split uses
        for k in [k for k, v in s.items() if not v]:
            del s[k]
    return {"version": 1, "data": str(data), "config": cfg.__dict__, "vocab": vocab.to_dict(),
            "templates": [t.__dict__ for t in TEMPLATES], "texts": table.texts, "constraints": table.cons,
            "texts_sha1": texts_sha1(table.texts), "splits": splits}


def texts_sha1(texts: list[str]) -> str:
    return hashlib.sha1("\n".join(texts).encode()).hexdigest()


CAPTIONS = "captions.json"
EMBEDDINGS = "text_embeddings.safetensors"


def write_captions(table: dict, out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / CAPTIONS, json.dumps(table))
    return out / CAPTIONS


def read_captions(folder: str | Path) -> dict:
    p = Path(folder) / CAPTIONS
    if not p.is_file():
        raise DittoError(f"{folder} has no {CAPTIONS}: run `dittomusic clap captions` first")
    try:
        table = json.loads(p.read_text())
        assert table["version"] == 1 and len(table["texts"]) == len(table["constraints"])
    except Exception:
        raise DittoError(f"{p} is not a dittomusic caption table") from None
    return table


def make_caption_cache(data: str | Path, out: str | Path, cfg: CaptionConfig = CaptionConfig(), encoder=None,
                       progress: bool = True) -> dict:
    """captions.json and the frozen sentence embeddings of all its texts (text_embeddings.safetensors) in `out`.

    encoder: anything with .encode(texts) -> [N, D] and a .name (default: the MiniLM SentenceEncoder)."""
    from dittomusic.checkpoint import save_tensors
    from dittomusic.clap.text import SentenceEncoder

    table = build_captions(data, cfg, progress)
    write_captions(table, out)
    enc = encoder or SentenceEncoder()
    emb = enc.encode(table["texts"], progress=progress)
    save_tensors(Path(out) / EMBEDDINGS, {"embeddings": emb.half()},
                 {"kind": "clap_text_embeddings", "encoder": enc.name, "texts_sha1": table["texts_sha1"]})
    n = {k: len(v["clip_ids"]) for k, v in table["splits"].items()}
    return {"texts": len(table["texts"]), "clips": n, "encoder": enc.name, "dim": int(emb.shape[1])}
