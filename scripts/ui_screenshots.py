"""Screenshots of each tab of `dittomusic ui` for the README (docs/ui/), taken by headless Chromium.

    PYTHONPATH=src python scripts/ui_screenshots.py [--model FILE] [--iters 8] [--out docs/ui]

Starts the app in-process on a free port, draws a loudness curve and steers it (so the Intensity
shot shows a result), then shoots every tab."""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="base model [default: the bundled one]")
    ap.add_argument("--student", default=None)
    ap.add_argument("--iters", type=int, default=8, help="optimization steps of the steered example")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default="docs/ui")
    args = ap.parse_args()
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    from playwright.sync_api import sync_playwright

    from dittomusic.app.ui import build_app, launch
    from dittomusic.generate import Pipeline

    pipe = Pipeline(args.model, "cpu")
    # default_model as `dittomusic ui` sets it: on the bundled model, DITTO-2 runs on its student's own
    # teacher (control/runs.py model_for), not on a newer bundled base the student was not distilled from
    app, demo = build_app(pipe, student=args.student, defaults={"iters": args.iters, "steps": args.steps},
                          default_model=args.model is None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch(demo, app, port=port, block=False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(300_000)
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("#generate-run")
        page.get_by_role("tab", name="Intensity").click()
        box = page.locator("#intensity-canvas canvas").first.bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.wait_for_timeout(500)
        page.mouse.move(cx - 330, cy + 60)
        page.mouse.down()
        for k in range(1, 41):  # a swell and a fade
            x = -330 + 660 * k / 40
            page.mouse.move(cx + x, cy + 60 - 130 * (1 - (x / 330) ** 2), steps=2)
        page.mouse.up()
        print("drawn a curve; waiting for it to become the target", flush=True)
        page.wait_for_function("() => document.querySelector('#intensity-note textarea').value.startsWith('time_s')")
        print("steering it", flush=True)
        page.click("#intensity-run")
        page.wait_for_selector("#intensity-result audio[src]", state="attached")
        page.wait_for_timeout(2000)
        page.screenshot(path=str(out / "intensity.png"), full_page=True)
        for name in ("Generate", "Melody", "Structure", "Painting"):
            if name == "Painting":  # the steered result becomes the reference to continue
                page.get_by_role("tab", name="Intensity").click()
                page.click("#intensity-use")
                page.wait_for_selector("#painting-reference audio[src]", state="attached")
            else:
                page.get_by_role("tab", name=name).click()
            page.wait_for_timeout(800)
            if name != "Generate":
                page.click(f"#{name.lower()}-show")
                page.wait_for_selector(f"#{name.lower()}-target img", state="attached")
                page.wait_for_timeout(1500)
            page.screenshot(path=str(out / f"{name.lower()}.png"), full_page=True)
        browser.close()
    demo.close()
    for p in sorted(out.glob("*.png")):
        print(p)


if __name__ == "__main__":
    main()
