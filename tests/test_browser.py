"""End to end in a real headless Chromium (the system /usr/bin/chromium driven by playwright)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures_app import REPO, write_image

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
    page.wait_for_function("document.querySelector('#summary').innerText.includes('region')")
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


def test_after_a_bad_file_the_input_takes_the_next_one(page, app_urls, tmp_path):
    """A file that is no image: an error, and the input shows its upload area again (not a collapsed broken
    image); the next photo is anonymized, its threshold shown (hidden until then) and its download named after it."""
    broken, photo = tmp_path / "broken.jpg", tmp_path / "my photo.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 20)
    write_image(photo, size=(120, 90))
    page = page.context.new_page()  # a fresh page: nothing uploaded yet
    page.set_default_timeout(30_000)
    page.goto(app_urls["ok"])
    assert not page.locator("#threshold-used").is_visible()
    page.locator("#input-image input[type=file]").set_input_files(str(broken))
    page.get_by_text("Cannot read this file: broken.jpg").wait_for()
    page.get_by_text("Click to Upload").wait_for()
    assert page.locator("#input-image img").count() == 0
    page.locator("#input-image input[type=file]").set_input_files(str(photo))
    page.wait_for_function("document.querySelector('#summary').innerText.includes('region')")
    assert page.locator("#threshold-used input").input_value() not in ("", "0")
    assert page.locator("#result-image a[download]").get_attribute("download") == "my_photo-anonymized.jpg"
    page.close()
