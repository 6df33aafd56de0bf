"""The page in headless Chromium: it loads, a preset is steered end to end, a drawn curve becomes
the target, a corrupt upload is refused in the page, concurrent jobs are served in order, and the
model loads once a page is open, a first job waiting for it."""

from __future__ import annotations

import threading

import numpy as np

from .conftest import SECONDS


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def _toast(page) -> str:
    page.wait_for_selector(".toast-body")
    return " ".join(page.locator(".toast-body").all_inner_texts())


def test_the_page_loads_with_a_tab_per_task(page):
    tabs = page.get_by_role("tab").all_inner_texts()
    assert tabs[:5] == ["Generate", "Intensity", "Melody", "Structure", "Painting"]
    from dittomusic.models.loading import bundled_path

    # the text task's tab appears once a CLAP is bundled to score it: never a tab that can only fail
    assert any("Text" in t for t in tabs) == bundled_path("clap").is_file()
    assert "Traceback" not in page.content()


def test_an_intensity_preset_is_steered_end_to_end(page, served):
    app, _ = served
    _tab(page, "Intensity")
    page.click("#intensity-run")
    page.wait_for_selector("#intensity-result audio[src]", state="attached")
    assert "intensity with ditto2" in page.locator("#intensity-status").inner_text()
    audio = page.locator("#intensity-result audio[src]").first  # the player's own element
    page.wait_for_function("el => el.duration > 0", arg=audio.element_handle(), timeout=30_000)
    frames = app.backend.frames_for(SECONDS)
    want = frames * app.cfg.hop_length / app.cfg.sample_rate
    assert abs(audio.evaluate("el => el.duration") - want) < 0.05
    names = page.locator("#intensity-files").inner_text().replace("\n", "")
    assert "intensity.wav" in names and "report.json" in names and "latent.safetensors" in names
    assert page.locator("#intensity-plot img").count() == 1 and page.locator("#intensity-spec img").count() == 1


def test_a_drawn_curve_becomes_the_target(page):
    _tab(page, "Intensity")
    canvas = page.locator("#intensity-canvas canvas").first
    page.wait_for_timeout(500)  # the editor fits its image to the canvas first
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    w, h = 560, 140  # inside the 800 x 240 image, drawn at ~92 %
    page.mouse.move(cx - w / 2, cy + h / 2)
    page.mouse.down()
    for k in range(1, 21):  # bottom left to top right: quiet to loud
        page.mouse.move(cx - w / 2 + w * k / 20, cy + h / 2 - h * k / 20, steps=2)
    page.mouse.up()
    note = page.locator("#intensity-note textarea")
    page.wait_for_function("el => el.value.startsWith('time_s,db')", arg=note.element_handle())
    assert page.locator("#intensity-source input:checked").get_attribute("value") == "drawing"
    rows = np.array([[float(x) for x in r.split(",")] for r in note.input_value().splitlines()[1:]])
    t, db = rows[:, 0], rows[:, 1]
    assert len(rows) > 20 and np.all(np.diff(t) > 0) and 0 <= t[0] < t[-1] <= SECONDS
    # the line spans 70 % of the height between the sliders' -38 (bottom) and -18 dB (top)
    assert np.corrcoef(t, db)[0, 1] > 0.95 and 10 < db[-1] - db[0] < 18 and -38 < db[0] and db[-1] < -18
    # the canvas's input event as the stroke began (nothing drawn yet) was no error (errors stay in the page)
    assert page.locator(".toast-body").count() == 0


def test_a_corrupt_upload_shows_its_error(page, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(200))
    _tab(page, "Intensity")
    page.locator("#intensity-audio input[type=file]").set_input_files(str(bad))
    msg = _toast(page)
    assert "not an audio file" in msg and "broken.wav" in msg and "Traceback" not in msg


def test_four_concurrent_jobs_complete_in_order(served, tmp_path):
    from gradio_client import Client

    app, url = served
    client = Client(url, verbose=False, analytics_enabled=False, httpx_kwargs={"timeout": 300},
                    download_files=str(tmp_path))
    seeds = [11, 12, 13, 14]

    def submit(seed, seconds=SECONDS):
        return client.submit("", [], "", "", "", seed, 2, 3.0, seconds, 0, api_name="/generate")

    # one after the other into the queue, then all wait on the model's one slot together; a bad
    # job (a clip too short) among them fails alone
    jobs = []
    for s in seeds[:2] + [None] + seeds[2:]:
        jobs.append(submit(99, 0.5) if s is None else submit(s))
        threading.Event().wait(0.3)
    bad = jobs.pop(2)
    results = [j.result(timeout=300) for j in jobs]
    assert len(results) == 4 and all(r[1] and r[1].endswith("generated.wav") for r in results)
    assert [s for _, s in app.history if s in seeds] == seeds
    try:
        bad.result(timeout=60)
        raise AssertionError("the bad job ran")
    except Exception as e:
        assert "less than minimum value 1" in str(e)  # gradio's own check of the slider's range


def test_the_model_loads_once_a_page_is_open_and_a_first_job_waits_for_it(browser, tiny_model_path, tmp_path,
                                                                          monkeypatch):
    import dittomusic.app.ui as ui
    import dittomusic.generate as gen
    from dittomusic.app.catalog import read_catalog
    from dittomusic.app.model import ModelLoader

    from .conftest import _free_port

    gate, loads, real = threading.Event(), [], gen.Pipeline

    class Held(real):  # the load takes as long as the test says
        def __init__(self, *a, **kw):
            loads.append(a)
            assert gate.wait(300), "the test never released the model"
            super().__init__(*a, **kw)

    monkeypatch.setattr(gen, "Pipeline", Held)
    monkeypatch.setattr(ui, "MODEL_START_S", 3600.0)  # only the page starts it here
    app, demo = ui.build_app(ModelLoader(tiny_model_path, "cpu", "griffinlim"),
                             catalog=read_catalog(tiny_model_path, "griffinlim"), out_dir=tmp_path,
                             defaults={"steps": 2, "iters": 2, "seconds": SECONDS})
    port = _free_port()
    ui.launch(demo, app, port=port, block=False)
    ctx = browser.new_context(viewport={"width": 1280, "height": 1600})
    try:
        assert not loads
        pg = ctx.new_page()
        pg.set_default_timeout(180_000)
        pg.goto(f"http://127.0.0.1:{port}/")
        pg.wait_for_selector("#generate-run")
        for _ in range(600):  # the page's load event starts it
            if loads:
                break
            threading.Event().wait(0.05)
        assert len(loads) == 1 and not app.model.ready
        pg.click("#generate-run")
        pg.wait_for_function("() => document.body.innerText.includes('loading the model')")
        gate.set()
        pg.wait_for_selector("#generate-result audio[src]", state="attached")
        assert "Generated" in pg.locator("#generate-status").inner_text() and len(loads) == 1
    finally:
        gate.set()
        ctx.close()
        demo.close()
