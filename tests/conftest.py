"""Shared fixtures: real rendered audio and a tiny dataset, both built inside the tests."""

from __future__ import annotations

import numpy as np
import pytest

from dittomusic.audio.mel import MelConfig


@pytest.fixture(scope="session")
def mel_cfg() -> MelConfig:
    return MelConfig()


@pytest.fixture(scope="session")
def rendered_audio() -> np.ndarray:
    """~12 s of a Bach chorale rendered by FluidSynth: real music, not a synthetic tone."""
    from dittomusic.data.arrange import arrange
    from dittomusic.data.render import FluidRenderer
    from dittomusic.data.score import parse_piece
    from dittomusic.data.sources import PieceRef, music21_corpus_dir

    ref = PieceRef("music21:bach/bwv66.6.mxl", str(music21_corpus_dir() / "bach/bwv66.6.mxl"), "chorale")
    arr = arrange(parse_piece(ref), np.random.default_rng(1), max_seconds=12.0)
    return FluidRenderer().render(arr)


TINY = dict(hours=0.03, max_seconds=12.0, max_variants=1, val_frac=0.2, test_frac=0.2, workers=1,
            shard_clips=8, collections=["chorale", "Irish folk tune", "folk song"])


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A dataset of ~2 minutes from three collections, built in-process."""
    from dittomusic.data.build import BuildConfig, build_dataset

    out = tmp_path_factory.mktemp("tiny") / "ds"
    summary = build_dataset(BuildConfig(out=str(out), **TINY), progress=False)
    return out, summary
