"""A tiny random teacher that shares the tiny dataset's tag vocabulary."""

from __future__ import annotations

import pytest
import torch

TINY_MODEL = {"width": 32, "depth": 2, "heads": 2, "patch_frames": 8, "denoise_head": 64}


@pytest.fixture(autouse=True)
def _one_thread():
    # tensors this small gain nothing from threads, and on a busy machine the extra threads cost seconds
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def random_teacher(vocab: dict, seed: int = 0):
    """A MelDiT whose zero-initialised output layers are randomised, so it computes something."""
    from dittomusic.models import MelDiT, ModelConfig

    torch.manual_seed(seed)
    net = MelDiT(ModelConfig.for_vocab(vocab, **TINY_MODEL))
    for m in (net.patch_out, net.ada_out, net.head[-1], *[b.ada for b in net.blocks]):
        torch.nn.init.normal_(m.weight, std=0.05)
    return net.eval().requires_grad_(False)


@pytest.fixture(scope="session")
def teacher_path(tiny_dataset, tmp_path_factory):
    from dittomusic.checkpoint import save_tensors
    from dittomusic.data.dataset import TagVocab

    root, _ = tiny_dataset
    net = random_teacher(TagVocab.load(root).to_dict())
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    save_tensors(path, {k: v.half() for k, v in net.state_dict().items()},
                 {"kind": "base", "model_config": net.cfg.to_dict(), "schedule": "cosine"})
    return path

