"""The web pages in a real browser (Playwright driving Debian's Chromium).

Upload a sample, wait for the results, see the overlay and the table, select and delete a
particle (the count drops), undo, draw a new particle, download the CSV. Screenshots go to
the test's tmp folder (``PNN_SCREENSHOTS=/some/dir`` keeps them there instead).

Skipped when /usr/bin/chromium or the playwright package is missing. CI needs:
``apt-get install -y chromium`` and ``pip install playwright`` (never ``playwright install``).
"""
from __future__ import annotations

import io
import os
import re
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("no /usr/bin/chromium (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("uvicorn")

from particlesnn import HeightMap  # noqa: E402
from particlesnn.io import gsf  # noqa: E402
from particlesnn.web import create_app  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def sample(path: Path, n: int = 30, size: int = 160, seed: int = 3, edge: bool = False) -> Path:
    """An STM-like map: Gaussian particles (0.5 nm/px), a slight tilt and noise, as .gsf;
    ``edge``: one more particle cut by the left border."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    z = 0.3 * xx / size + rng.normal(0, 0.05, (size, size))
    placed: list[tuple[float, float]] = []
    while len(placed) < n:
        cy, cx = rng.uniform(10, size - 10, 2)
        if all((cy - a) ** 2 + (cx - b) ** 2 > 16**2 for a, b in placed):
            placed.append((cy, cx))
            s = rng.uniform(2.0, 3.5)
            z += 2.5 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    if edge:
        z += 2.5 * np.exp(-((yy - size / 2) ** 2 + xx ** 2) / (2 * 3.0**2))
    gsf.write(path, HeightMap(z, pixel_size=(0.5, 0.5)))
    return path


@pytest.fixture
def server(tmp_path):
    import uvicorn

    app = create_app(tmp_path / "data")
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    t0 = time.time()
    while not srv.started and time.time() - t0 < 20:
        time.sleep(0.05)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    th.join(10)


@pytest.fixture
def shots(tmp_path) -> Path:
    out = Path(os.environ.get("PNN_SCREENSHOTS", tmp_path / "screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def count_shown(page) -> int:
    return int(page.inner_text("#count").strip("() ").split()[0])


def test_numbers_are_shown_whole(server):
    """PNN.fmt, which writes every number of the pages: trailing zeros of decimals go, those of
    an integer part stay (a mean diameter of 189.85 nm was shown as '19')."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page()
        page.goto(server + "/")
        shown = page.evaluate("[189.85, 199.96, 1000.2, 100.0001, 12.5, 20.001, 0.25, 3, 4452.886, 2e-5]"
                              ".map((v) => PNN.fmt(v))")
        browser.close()
    assert shown == ["190", "200", "1000", "100", "12.5", "20", "0.25", "3", "4453", "2.000e-5"]


def test_summary_units(server):
    """The summary's key statistics carry their unit: heights in the map's own unit (a plain
    image's grey levels are "a.u."; "mean height 112" was shown bare)."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page()
        page.goto(server + "/")
        shown = page.evaluate("""() => {
          const t = document.createElement('table');
          PNN.summaryTable(t, {count: 3, height_max_au_mean: 112.4, d_mean_px: 7.5,
                               nn_distance_nm_mean: 20});
          return [...t.querySelectorAll('tr')].slice(0, 4).map(
            (r) => [...r.querySelectorAll('td')].map((c) => c.textContent).join(' = '));
        }""")
        units = page.evaluate("['height_max_nm_mean', 'height_max_nA_mean', 'height_max_au_mean', "
                              "'d_mean_px', 'coverage'].map((k) => PNN.statUnit(k))")
        browser.close()
    assert shown == ["particles = 3", "mean diameter = 7.5 px", "mean height = 112 a.u.",
                     "mean nearest-neighbour distance = 20 nm"], shown
    assert units == ["nm", "nA", "a.u.", "px", ""]


def test_upload_view_edit_download(server, tmp_path, shots):
    path = sample(tmp_path / "particles.gsf", edge=True)
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 950}, accept_downloads=True)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server + "/")
        page.set_input_files("#file-input", str(path))
        assert "particles.gsf" in page.inner_text("#file-list")
        page.select_option("#method", "threshold")
        page.select_option("#refine", "false")  # keep the test fast
        page.fill("#user", "browser-test")
        page.screenshot(path=shots / "web_upload.png")
        page.click("#upload-btn")

        # set page: progress, then the image done
        page.wait_for_url("**/sets/**")
        page.wait_for_selector("#images-table .badge.done", timeout=60_000)
        page.wait_for_selector("#set-hist svg")
        page.screenshot(path=shots / "web_set.png", full_page=True)
        page.click("#images-table tbody a")

        # result page: overlay polygons and table rows agree
        page.wait_for_selector("#polys path")
        n = count_shown(page)
        assert n >= 20
        assert page.locator("#polys path").count() == n
        assert page.locator("#ptable tbody tr").count() == n
        assert page.locator("#summary").inner_text().startswith("particles")
        assert page.locator("#detector").inner_text() == "Method: threshold"
        # the histogram holds the particles of the size statistics, as the summary says
        sized = page.locator("#summary tr", has_text="in size statistics").locator("td").last.inner_text()
        title = page.inner_text("#hist-title")
        assert re.fullmatch(rf"Size distribution \({sized}; 1 cut by the border left out\)", title), (title, sized)

        # click a particle: its row is highlighted
        page.locator("#polys path").nth(3).click()
        assert page.locator("#ptable tbody tr.sel").count() == 1
        label = page.locator("#ptable tbody tr.sel").get_attribute("data-label")
        assert page.locator(f'#polys path[data-label="{label}"]').get_attribute("class") == "p sel"
        page.screenshot(path=shots / "web_result.png")

        # delete it: the count drops at once (table, overlay, summary)
        page.click("#btn-delete")
        page.wait_for_function(f"document.querySelector('#count').textContent === '({n - 1})'")
        assert page.locator("#polys path").count() == n - 1
        assert f"{n - 1}" in page.locator("#summary tr").first.inner_text()

        # the CSV follows the edit
        with page.expect_download() as dl:
            page.click("#dl-csv")
        csv = Path(dl.value.path()).read_text()
        assert len(pd.read_csv(io.StringIO(csv))) == n - 1

        # undo restores it
        page.click("#btn-undo")
        page.wait_for_function(f"document.querySelector('#count').textContent === '({n})'")

        # draw a new particle in a free corner: 4 clicks on the map, then Enter
        page.click('[data-mode="add"]')
        to_screen = """([x, y]) => { const s = document.getElementById('scene');
            const pt = document.getElementById('svg').createSVGPoint(); pt.x = x; pt.y = y;
            const q = pt.matrixTransform(s.getScreenCTM()); return [q.x, q.y]; }"""
        for xy in ([1, 1], [7, 1], [7, 7], [1, 7]):
            sx, sy = page.evaluate(to_screen, xy)
            page.mouse.click(sx, sy)
        page.keyboard.press("Enter")
        page.wait_for_function(f"document.querySelector('#count').textContent === '({n + 1})'")
        page.screenshot(path=shots / "web_edited.png")
        browser.close()
    assert not errors, errors
    for name in ("web_upload.png", "web_set.png", "web_result.png", "web_edited.png"):
        assert (shots / name).stat().st_size > 10_000


def test_edit_finetune_and_see_the_new_model(server, tmp_path, shots):
    """Follow a "check these first" link, correct two images in the editor, fine-tune with a
    tiny budget, see the new model listed with its scores."""
    import httpx

    ids = []
    for k in range(2):
        path = sample(tmp_path / f"lab{k}.gsf", n=20, size=128, seed=10 + k)
        opts = {"method": "model", "refine": "true"} if k == 0 else {"method": "threshold", "refine": "false"}
        r = httpx.post(server + "/api/sets", files=[("files", (path.name, path.read_bytes()))],
                       data=opts, timeout=30)
        assert r.status_code == 201, r.text
        ids.append(r.json()["images"][0]["id"])
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 950})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server + "/")
        page.evaluate("localStorage.setItem('pnn-user', 'browser-test')")
        for k, image_id in enumerate(ids):  # edit: delete one particle on each image
            page.goto(f"{server}/images/{image_id}")
            page.wait_for_selector("#polys path", timeout=60_000)
            n = count_shown(page)
            if k == 0:  # which shipped model outlined the particles, with which profile
                assert re.match(r"Detector: particlesnn-unet-height, (standard|textured) profile \(",
                                page.locator("#detector").inner_text())
            if k == 0:  # the model's least certain particles, a link selects and shows one
                page.wait_for_selector("#check-card:not([hidden]) #check-low a")
                link = page.locator("#check-low a").first
                label = link.get_attribute("data-label")
                link.click()
                assert page.locator("#ptable tbody tr.sel").get_attribute("data-label") == label
                assert page.url.endswith(f"#particle-{label}")
                page.screenshot(path=shots / "web_check_first.png")
                page.click("#btn-fit")
            page.locator("#polys path").nth(2).click()
            page.click("#btn-delete")
            page.wait_for_function(f"document.querySelector('#count').textContent === '({n - 1})'")
        page.click("header nav >> text=Model")
        page.wait_for_url("**/models")
        page.wait_for_selector("#corr-table tbody tr")
        assert page.locator("#corr-table tbody tr").count() == 2
        assert "browser-test" in page.inner_text("#corr-table")
        assert page.locator("#models-table tbody tr").count() == 1  # the shipped model
        page.fill("#minutes", "0.05")
        page.click("#finetune-btn")
        page.wait_for_selector("#training:not([hidden])")
        # one failed poll while the model trains (a busy or restarting server) must not leave
        # the page stuck on "running": it tries again
        failed = []

        def fail_once(route):
            if failed:
                return route.continue_()
            failed.append(route.request.url)
            route.fulfill(status=500, content_type="application/json", body='{"detail": "busy"}')

        page.route("**/api/models", fail_once)
        page.screenshot(path=shots / "web_models_training.png")
        page.wait_for_selector("#training-badge.done, #training-badge.failed", timeout=240_000)
        assert page.inner_text("#training-badge") == "done", page.inner_text("#training-result")
        assert failed, "the injected failure was never met"
        page.wait_for_function("document.querySelectorAll('#models-table tbody tr').length === 2")
        row = page.locator("#models-table tbody tr").nth(1)
        cells = row.locator("td")
        assert "fine-tuned" in cells.nth(0).inner_text()
        assert cells.nth(1).inner_text() in ("default", "candidate")
        for c in (2, 3):  # held-out and benchmark F1, with the current default's in brackets
            txt = cells.nth(c).inner_text()
            assert re.fullmatch(r"\d\.\d{3} \(\d\.\d{3}\)", txt), txt
        assert "F1" in page.inner_text("#training-result")
        page.screenshot(path=shots / "web_models.png", full_page=True)
        browser.close()
    assert not errors, errors
    assert (shots / "web_models.png").stat().st_size > 10_000


def test_report_fits_the_window(tmp_path):
    """The HTML report as a browser lays it out: a particle table of 80 columns (analyze's
    full table, fit parameters included) scrolls in its own box; the page itself stays as
    wide as the window (the PTO film's report was 6551 px wide, headings on the far left)."""
    from particlesnn.export import report

    wide = pd.DataFrame({f"column_{k}_nm": np.linspace(1, 2, 40) * 1e4 for k in range(80)})
    per_image = {f"statistic_{k}": 12345.678 for k in range(40)}
    p = report.write_report(tmp_path / "report.html",
                            [{"name": "scan.gsf", "overlay": np.zeros((64, 64, 3), np.uint8),
                              "summary": {"count": 40}, "particles": wide}],
                            {"images": 1, **per_image}, {})
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(p.as_uri())
        page_width = page.evaluate("document.documentElement.scrollWidth")
        box = page.evaluate("(() => { const all = document.querySelectorAll('.scroll');"
                            " const d = all[all.length - 1];"
                            " return [d.clientWidth, d.scrollWidth]; })()")
        browser.close()
    assert page_width <= 1200, page_width
    assert box[0] <= 1200 < box[1], box  # the table scrolls inside its box
