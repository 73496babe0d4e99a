"""The studio in a real browser: headless Debian Chromium driven by Playwright.

The test uploads a photo, generates a grid of paintings with the embedded default CAN,
picks one, runs a small job, watches its progress, and downloads a result that must
decode. It saves a screenshot of the page (``docs/web_studio.png`` when that file is
missing or CANSTYLE_SCREENSHOT=1, else in the test's temp folder).
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

from canstyle.web.app import create_app  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "docs" / "web_studio.png"
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
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not srv.started and time.monotonic() - t0 < 30:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(15)
    sock.close()


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


def test_browser_upload_paint_watch_download(server: str, tmp_path: Path) -> None:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 1000}, accept_downloads=True)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server + "/")
            page.wait_for_selector("body[data-ready='1']")
            _upload_and_pick(page)
            page.evaluate(WATCH_PROGRESS)
            page.click("#start-btn")
            page.wait_for_selector("#job-status.done", timeout=90_000)
            assert page.is_hidden("#cancel-btn") and page.is_hidden("#preview-figure")
            seen = page.evaluate("window.__progress")
            assert any("stylize · iteration" in s and "loss" in s for s in seen), seen
            previews = [u for u in page.evaluate("window.__previews") if u and "/preview?n=" in u]
            assert previews, "no live preview was shown"
            page.wait_for_selector("#gallery-list figure.card img")
            with page.expect_download() as info:
                page.click("#job-results a.download")
            path = info.value.path()
            with Image.open(path) as im:
                im.load()
                assert im.format == "PNG" and im.size == (192, 108)
            page.wait_for_timeout(300)  # let the result images paint before the screenshot
            shot = page.screenshot(full_page=True)
            assert not errors, errors
        finally:
            browser.close()
    Image.open(io.BytesIO(shot)).verify()
    target = SCREENSHOT if (not SCREENSHOT.exists() or os.environ.get("CANSTYLE_SCREENSHOT")) else \
        tmp_path / SCREENSHOT.name
    target.write_bytes(shot)


def _default_can_size() -> int:
    """The embedded CAN's painting size (the studio shows paintings at their native size)."""
    import json

    from canstyle.pipeline import DEFAULT_CAN
    from canstyle.weights import read_metadata

    return int(json.loads(read_metadata(DEFAULT_CAN)["config"])["preset"])


def _upload_and_pick(page) -> None:  # type: ignore[no-untyped-def]
    """Upload the giraffe, generate 8 paintings, pick one, set up a small draft job
    (192 px, 40 + 10 iterations: a few seconds, yet the screenshot shows a giraffe)."""
    page.set_input_files("#photo-input", str(REPO / "examples" / "giraffe.jpg"))
    sync_api.expect(page.locator("#photo-list .thumb")).to_have_count(3)  # upload + 2 bundled
    selected = page.query_selector_all("#photo-list .thumb.selected")
    assert len(selected) == 1 and not selected[0].get_attribute("data-id").startswith("demo-")
    page.fill("#seed-count", "8")
    page.click("#generate-btn")
    side = _default_can_size()
    poll(page, "() => [...document.querySelectorAll('#painting-grid img')]"
               f".filter(i => i.complete && i.naturalWidth === {side}).length === 8")
    page.click("#painting-grid .thumb[data-seed='5']")
    assert page.get_attribute("#painting-grid .thumb[data-seed='5']", "class").endswith("selected")
    page.fill("#opt-size", "192")
    page.fill("#opt-strength", "1")
    assert page.inner_text("#opt-strength-value") == "1"
    page.select_option("#opt-color", "luminance")
    page.select_option("#opt-quality", "draft")
    page.fill("#opt-seed", "0")
    assert "1 photo(s), default painting #5" in page.inner_text("#selection-summary")
