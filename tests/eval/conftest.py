"""A tag classifier trained for one epoch on the tiny dataset, shared by the eval tests."""

import pytest


@pytest.fixture(scope="module")
def clf(tiny_dataset, tmp_path_factory):
    from dittomusic.eval.classifier import train_classifier

    root, _ = tiny_dataset
    path = tmp_path_factory.mktemp("clf") / "clf.safetensors"
    train_classifier(root, path, epochs=1, batch_size=8, progress=False)
    return path
