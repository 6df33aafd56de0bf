"""The app on the tiny model (and a tiny DITTO-2 student copied from it), served in-process on a
free port, and headless Chromium (Debian's, never a downloaded one) to drive it."""

from __future__ import annotations

import os
import socket

import pytest
import torch

CHROMIUM = "/usr/bin/chromium"
SECONDS = 1.5  # every job's clip length: the tiny model makes 128 frames of it


@pytest.fixture(scope="session")
def tiny_student_path(tiny_model_path, tmp_path_factory):
    from dittomusic.checkpoint import save_tensors
    from dittomusic.distill import student_from_teacher, time_grid
    from dittomusic.models.loading import load_model

    model, _ = load_model(tiny_model_path, "cpu")
    st = student_from_teacher(model, "cd")
    grid = time_grid(20)
    path = tmp_path_factory.mktemp("student") / "cd.safetensors"
    save_tensors(path, st.state_dict(), {"kind": "cd", "guidance": 3.0, "grid": grid,
                                         "distill": {"kind": "cd", "guidance": 3.0, "grid": grid},
                                         "model_config": st.cfg.to_dict(), "schedule": "cosine"})
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def served(tiny_model_path, tiny_student_path, tmp_path_factory):
    """(app, url): the app on the tiny model, two sampler steps and two optimization steps a job."""
    from dittomusic.app.ui import build_app, launch
    from dittomusic.generate import Pipeline

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors this small gain nothing from threads on a busy machine
    pipe = Pipeline(tiny_model_path, "cpu", "griffinlim")
    app, demo = build_app(pipe, student=str(tiny_student_path), out_dir=tmp_path_factory.mktemp("ui"),
                          defaults={"steps": 2, "iters": 2, "seconds": SECONDS})
    port = _free_port()
    launch(demo, app, port=port, block=False)
    yield app, f"http://127.0.0.1:{port}/"
    demo.close()
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (scripts/setup.sh does)")
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, served):
    _, url = served
    ctx = browser.new_context(viewport={"width": 1280, "height": 1600})
    pg = ctx.new_page()
    pg.set_default_timeout(180_000)  # generous: CI shares its 2 cores
    pg.goto(url)
    pg.wait_for_selector("#generate-run")
    yield pg
    ctx.close()


