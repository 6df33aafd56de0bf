"""The tiny random model as a Pipeline, and its chorale tags, for the method tests."""

import pytest

from dittomusic.generate import Pipeline, make_tags


@pytest.fixture(scope="module")
def pipe(tiny_model_path):
    return Pipeline(tiny_model_path, "cpu")


@pytest.fixture(scope="module")
def tags(pipe):
    return make_tags(pipe.vocab, collection="chorale")
