"""End to end in a real headless Chromium (the system /usr/bin/chromium driven by playwright)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures_app import REPO

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]  # a synthetic camera
pytestmark = pytest.mark.slow  # Chromium

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def page(app_urls):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["camera"])
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(app_urls["ok"])
        yield page
        browser.close()


def test_an_example_runs_and_the_result_appears(page):
    page.locator("button.gallery-item").first.click()  # astronaut.jpg
    page.wait_for_selector("#result-image img")
    page.wait_for_function("document.querySelector('#summary').innerText.includes('face region')")
    assert "threshold" in page.inner_text("#summary")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app-image.png"), full_page=True)


def test_webcam_frames_are_streamed_back_with_a_frame_rate(page):
    page.get_by_role("tab", name="Webcam").click()
    page.get_by_text("Click to Access Webcam").click()
    page.get_by_label("capture photo").click()  # starts streaming
    page.wait_for_function("document.querySelector('#fps').innerText.includes('frames/s')")
    assert "ms per frame" in page.inner_text("#fps")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app-webcam.png"), full_page=True)
