"""Reusing an optimized x_T (DITTO App. I, J) on a tiny random model: Table 10's rows and the
intra-batch variance finding."""

import numpy as np
import pytest

from dittomusic.control import get_control, intensity_preset, structure_from_pattern
from dittomusic.eval.reuse import intra_batch_variance, random_tags, reuse_markdown, reuse_table
from dittomusic.generate import Pipeline, make_tags

FR = 128


@pytest.fixture(scope="module")
def pipe(tiny_model_path):
    return Pipeline(tiny_model_path, "cpu")


def controls():
    return {"intensity": get_control("intensity", target=intensity_preset("linear-rise", FR, -40, -20)),
            "structure": get_control("structure", target=structure_from_pattern("ABBA", FR))}


def test_reuse_table_rows_and_freedom_helps(pipe):
    prompt = make_tags(pipe.vocab, collection="chorale")
    rows = reuse_table(pipe.backend, {"intensity": controls()["intensity"]}, prompt, random_tags(pipe.vocab, 3, 0),
                       batch=3, steps=4, iters=2, lr=0.05)
    assert [(r["sampler"], r["prompt"]) for r in rows] == [
        ("ddpm", "random"), ("ddpm+freedom", "random"), ("ddpm", "fixed"), ("ddpm+freedom", "fixed")]
    assert all(len(r["per_sample"]) == 3 and np.isfinite(r["loss"]) for r in rows)
    by = {(r["sampler"], r["prompt"]): r["loss"] for r in rows}
    assert by[("ddpm+freedom", "fixed")] < by[("ddpm", "fixed")]
    assert len(set(rows[2]["per_sample"])) == 3  # one x_T, different stochastic samples
    md = reuse_markdown(rows)
    assert "| intensity | DDPM+FreeDoM |" in md and "(11.25)" in md


def test_a_shared_x_T_lowers_intra_batch_variance(pipe):
    # whether varied prompts keep a shared x_T's batch closer is the trained model's property (App. J);
    # here: the bookkeeping, and that with one prompt and DDIM a shared x_T gives one clip, no variance
    rows = intra_batch_variance(pipe.backend, controls(), random_tags(pipe.vocab, 3, 1), sets=2, steps=3)
    assert [r["feature"] for r in rows] == ["intensity", "structure"]
    assert all(len(r["per_set_fixed"]) == 2 and r["random_x_T"] > 0 for r in rows)
    same = intra_batch_variance(pipe.backend, controls(), [make_tags(pipe.vocab, collection="chorale")] * 3, sets=1,
                                steps=3)
    assert all(r["fixed_x_T"] < 1e-10 < r["random_x_T"] for r in same)
