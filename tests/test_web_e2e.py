"""The studio in a real browser: headless Debian Chromium driven by Playwright.

The test uploads a photo, generates a grid of paintings with the embedded default CAN,
picks one, double-clicks Start (one job), cancels during the second photo (the first is
kept), runs the job again, opens the before/after viewer, downloads the zip and a result,
and deletes a job. It saves screenshots at 1280 and 390 px (``docs/web_studio.png`` and
``docs/web_studio_phone.png`` when missing or CANSTYLE_SCREENSHOT=1, else in the test's
temp folder); at 390 px the page must not scroll sideways.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

from canstyle.web.app import create_app  # noqa: E402
from tests.helpers import REPO, serve_in_thread  # noqa: E402

pytestmark = pytest.mark.e2e


def chromium() -> str:
    path = os.environ.get("CANSTYLE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        if os.environ.get("CI"):
            pytest.fail(f"Chromium not found at {path}; .ci/run installs Debian's chromium")
        pytest.skip("Chromium not installed (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real uvicorn server on a free loopback port, in a thread of this process."""
    out = tmp_path_factory.mktemp("studio")
    app = create_app(out, features="vgg16", device="cpu", allowed_hosts={"127.0.0.1", "localhost"})
    with serve_in_thread(app) as port:
        yield f"http://127.0.0.1:{port}"


def poll(page, fn: str, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    """Wait until the JS function ``fn`` returns true. (``wait_for_function`` evaluates strings,
    which the page's Content-Security-Policy forbids, as it should.)"""
    t0 = time.monotonic()
    while not page.evaluate(fn):
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {fn}"
        time.sleep(0.05)


# Records every progress line the page shows, so a fast job cannot slip between polls.
WATCH_PROGRESS = """() => {
  window.__progress = []; window.__previews = [];
  const detail = document.querySelector('#job-detail'), preview = document.querySelector('#job-preview');
  new MutationObserver(() => window.__progress.push(detail.textContent))
    .observe(detail, {childList: true, characterData: true, subtree: true});
  new MutationObserver(() => window.__previews.push(preview.getAttribute('src')))
    .observe(preview, {attributes: true, attributeFilter: ['src']});
}"""


WIDER_THAN_VIEWPORT = """() => [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)
  .slice(0, 8).map(e => `${e.tagName}#${e.id}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`)"""
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def api_json(page, path: str):  # type: ignore[no-untyped-def]
    """GET a JSON API path from inside the page (same origin, like the page's own calls)."""
    return page.evaluate("async (p) => (await fetch(p)).json()", path)


def save_shot(data: bytes, name: str, tmp_path: Path) -> None:
    Image.open(io.BytesIO(data)).verify()
    target = REPO / "docs" / name
    if target.exists() and not os.environ.get("CANSTYLE_SCREENSHOT"):
        target = tmp_path / name
    target.write_bytes(data)


def _check_defaults_come_from_the_library(page: sync_api.Page) -> None:
    """A fresh page shows StylizeOptions' defaults; the page itself types no numbers."""
    from canstyle.nst.plan import StylizeOptions

    opts = StylizeOptions()
    assert page.input_value("#opt-size") == str(opts.size)
    assert float(page.input_value("#opt-strength")) == opts.style_weight
    assert page.input_value("#opt-quality") == opts.quality
    assert page.input_value("#opt-balance") == opts.loss_scale
    assert page.text_content("#opt-strength-value") == page.input_value("#opt-strength")


def test_browser_studio_end_to_end(server: str, tmp_path: Path) -> None:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server + "/")
            page.wait_for_selector("body[data-ready='1']")
            _check_defaults_come_from_the_library(page)
            _check_keyboard_and_names(page)
            _upload_and_pick(page)
            cancelled = _double_click_then_cancel(page)
            _run_again(page, cancelled)
            _viewer_zip_and_download(page, tmp_path)
            _delete_job(page, cancelled, server)
            page.wait_for_timeout(300)  # let the result images paint before the screenshot
            save_shot(page.screenshot(full_page=True), "web_studio.png", tmp_path)
            page.set_viewport_size({"width": 390, "height": 844})
            page.wait_for_timeout(300)
            wide = page.evaluate(WIDER_THAN_VIEWPORT)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390, wide  # no sideways scrolling
            save_shot(page.screenshot(full_page=True), "web_studio_phone.png", tmp_path)
            assert not errors, errors
        finally:
            browser.close()


def _check_keyboard_and_names(page) -> None:  # type: ignore[no-untyped-def]
    page.focus("#photo-input")  # a real, focusable control (not display: none)
    assert page.evaluate("document.activeElement.id") == "photo-input"
    assert page.get_by_role("slider", name="Style strength").count() == 1
    assert page.is_hidden("#preview-figure") and page.is_hidden("#style-figure")  # no broken images
    assert page.request.head(page.url).ok


def _double_click_then_cancel(page) -> str:  # type: ignore[no-untyped-def]
    """Two photos; a double-click on Start makes one job; cancelled during photo 2, photo 1 stays."""
    page.click("#photo-list .thumb[data-id='demo-chelsea']")
    sync_api.expect(page.locator("#photo-list .thumb[data-id='demo-chelsea']")).to_have_attribute("aria-pressed", "true")
    page.evaluate(WATCH_PROGRESS)
    page.dblclick("#start-btn")
    page.wait_for_selector("#job-status.running", timeout=60_000)
    jobs = api_json(page, "/api/jobs")
    assert len(jobs) == 1, [j["id"] for j in jobs]
    page.wait_for_selector("#job-results figure.result img:not(.pending)", timeout=90_000)
    page.click("#cancel-btn")
    page.wait_for_selector("#job-status.cancelled", timeout=60_000)
    job = api_json(page, f"/api/jobs/{jobs[0]['id']}")
    assert job["status"] == "cancelled" and [r["index"] for r in job["results"]] == [0], job
    assert page.locator("#job-results figure.result").count() == 1
    seen = page.evaluate("window.__progress")
    assert any("stylize · iteration" in s and "loss" in s for s in seen), seen
    assert [u for u in page.evaluate("window.__previews") if u and "/preview?n=" in u], "no live preview"
    page.wait_for_selector("#gallery-list figure.card img:not(.pending)")
    return job["id"]


def _run_again(page, cancelled: str) -> None:  # type: ignore[no-untyped-def]
    page.click("#rerun-btn")
    poll(page, "() => document.querySelector('#selection-summary').textContent.includes('loaded')")
    assert page.input_value("#opt-size") == "192" and page.input_value("#opt-quality") == "draft"
    page.click("#photo-list .thumb[data-id='demo-chelsea']")  # one photo this time
    page.click("#start-btn")
    page.wait_for_selector("#job-status.done", timeout=90_000)
    assert page.is_hidden("#cancel-btn") and page.is_hidden("#preview-figure")
    assert page.title().startswith("✓ done")
    jobs = api_json(page, "/api/jobs")
    assert len(jobs) == 2 and jobs[0]["request"]["style"] == {"model": "default", "seed": 5, "upload": None}
    assert jobs[0]["request"]["seed"] == 0 and jobs[1]["id"] == cancelled


def _viewer_zip_and_download(page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page.click("#job-results figure.result button.plain")
    page.wait_for_selector("#viewer[open]")
    poll(page, "() => ['#viewer-after', '#viewer-before'].every(s => document.querySelector(s).naturalWidth > 0)")
    page.fill("#viewer-split", "25")
    assert "75%" in page.evaluate("document.querySelector('#viewer-before-clip').style.clipPath")
    page.click("#viewer-close")
    with page.expect_download() as info:
        page.click("#zip-link")
    with zipfile.ZipFile(info.value.path()) as z:
        assert {"result_0.png", "painting.png", "parameters.json"} <= set(z.namelist())
    with page.expect_download() as info:
        page.click("#job-results a.download")
    with Image.open(info.value.path()) as im:
        im.load()
        assert im.format == "PNG" and im.size == (192, 108)


def _delete_job(page, job_id: str, server: str) -> None:  # type: ignore[no-untyped-def]
    """Delete asks first (no: nothing goes); yes: the job goes, and from a second tab too."""
    row = f"#job-table tr[data-id='{job_id}']"
    other = page.context.new_page()
    other.goto(server + "/")
    other.wait_for_selector(row)
    before = page.locator("#gallery-list figure.card").count()
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    page.click(f"{row} button.danger")
    page.wait_for_timeout(300)  # time for a DELETE to land, had one been sent
    assert asked and "cannot be undone" in asked[0] and job_id in asked[0], asked
    assert page.locator(row).count() == 1 and api_json(page, f"/api/jobs/{job_id}")["id"] == job_id
    page.once("dialog", lambda d: d.accept())
    page.click(f"{row} button.danger")
    page.wait_for_selector(row, state="detached")
    poll(page, f"() => document.querySelectorAll('#gallery-list figure.card').length === {before - 1}")
    other.wait_for_selector(row, state="detached", timeout=10_000)  # told by the event stream
    other.close()


def _default_can_size() -> int:
    """The embedded CAN's painting size (the studio shows paintings at their native size)."""
    import json

    from canstyle.assets import DEFAULT_CAN
    from canstyle.weights import read_metadata

    return int(json.loads(read_metadata(DEFAULT_CAN)["config"])["preset"])


def _upload_and_pick(page) -> None:  # type: ignore[no-untyped-def]
    """Upload the giraffe, generate 8 paintings, pick one, set up a small draft job
    (192 px, 40 + 10 iterations: a few seconds, yet the screenshot shows a giraffe)."""
    page.set_input_files("#photo-input", str(REPO / "examples" / "giraffe.jpg"))
    sync_api.expect(page.locator("#photo-list .thumb")).to_have_count(3)  # upload + 2 bundled
    selected = page.query_selector_all("#photo-list .thumb.selected")
    assert len(selected) == 1 and not selected[0].get_attribute("data-id").startswith("demo-")
    assert selected[0].get_attribute("aria-pressed") == "true"
    assert "giraffe.jpg" in selected[0].query_selector("img").get_attribute("alt")
    page.fill("#seed-count", "8")
    page.click("#generate-btn")
    side = _default_can_size()
    poll(page, "() => [...document.querySelectorAll('#painting-grid img')]"
               f".filter(i => i.complete && i.naturalWidth === {side}).length === 8")
    page.click("#painting-grid .thumb[data-seed='5']")
    assert page.get_attribute("#painting-grid .thumb[data-seed='5']", "class").endswith("selected")
    assert page.get_attribute("#painting-grid .thumb[data-seed='5']", "aria-pressed") == "true"
    page.fill("#opt-size", "192")
    page.fill("#opt-strength", "1")
    assert page.inner_text("#opt-strength-value") == "1"
    page.select_option("#opt-color", "luminance")
    page.select_option("#opt-quality", "draft")
    page.fill("#opt-seed", "0")
    assert "1 photo(s), default painting #5" in page.inner_text("#selection-summary")


@contextlib.contextmanager
def studio_page(server: str) -> Iterator[sync_api.Page]:
    """A fresh browser on the studio's page at 1280 px, ready (the page's scripts have run)."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(server + "/")
            page.wait_for_selector("body[data-ready='1']")
            yield page
        finally:
            browser.close()


def test_run_again_says_when_its_photo_was_deleted(server: str) -> None:
    """A job's photo deleted since: "Run again" says so and paints no other photo instead."""
    with studio_page(server) as page:
        page.set_input_files("#photo-input", str(REPO / "examples" / "starry_night.jpg"))
        page.wait_for_selector("#photo-list .thumb.selected:not([data-id^='demo-'])")
        photo = page.get_attribute("#photo-list .thumb.selected", "data-id")
        body = {"photos": [photo], "style": {"model": "default", "seed": 1}, "size": 64,
                "iterations": 2, "coarse_iterations": 0}
        job = page.evaluate("""async (b) => (await fetch('/api/jobs', {method: 'POST',
            headers: {'Content-Type': 'application/json'}, body: JSON.stringify(b)})).json()""", body)
        page.wait_for_selector(f"#job-table tr[data-id='{job['id']}'] .badge.done", timeout=60_000)
        page.once("dialog", lambda d: d.accept())
        page.click(f"#photo-list .thumb-wrap:has([data-id='{photo}']) .remove")
        page.wait_for_selector(f"#photo-list [data-id='{photo}']", state="detached")
        page.click(f"#job-table tr[data-id='{job['id']}'] button:text('Run again')")
        poll(page, "() => document.querySelector('#start-error').textContent.includes('Deleted since')")
        assert page.locator("#photo-list .thumb.selected").count() == 0
        assert "0 photo(s)" in page.inner_text("#selection-summary")


def test_a_small_uploaded_painting_gets_a_size_hint(server: str, tmp_path: Path) -> None:
    """As `stylize` does: a painting enlarged over 2x to be analysed is named before Start."""
    small = tmp_path / "small.png"
    Image.new("RGB", (120, 90), (200, 120, 40)).save(small)
    with studio_page(server) as page:
        page.set_input_files("#style-input", str(small))
        page.wait_for_selector("#style-list .thumb.selected")
        page.fill("#opt-size", "512")
        poll(page, "() => document.querySelector('#style-hint').textContent.includes('enlarged 4.3×')")
        assert page.is_visible("#style-hint")
        page.fill("#opt-size", "192")
        poll(page, "() => document.querySelector('#style-hint').textContent === ''")
        assert page.is_hidden("#style-hint")
