"""The Gradio app, driven through gradio_client against its server (started in this process as ``python app.py``
starts it: ``conftest.app_urls``)."""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from fixtures_app import write_image  # noqa: E402

pytestmark = pytest.mark.slow  # an app server: Gradio alone takes seconds to import

CONTROLS = dict(mode="auto", fixed=0.5, method="inpaint_telea", dilation=2, shape="predicted", size=256)


@pytest.fixture(scope="module")
def client(app_urls):
    return gradio_client.Client(app_urls["ok"], verbose=False)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("app") / "photo.png"
    write_image(path, size=(120, 90))
    return path


def erase(client, image: Path, **controls):
    values = {**CONTROLS, **controls}
    return client.predict(gradio_client.handle_file(str(image)), values["mode"], values["fixed"], values["method"],
                          values["dilation"], values["shape"], values["size"], api_name="/erase")


def pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_upload_returns_all_outputs(client, photo):
    heat, hist, threshold, overlay, result, summary, review, regions, record = erase(client, photo)
    assert pixels(heat).shape == (90, 120, 3)
    assert pixels(result).shape == (90, 120, 3)
    assert pixels(overlay["image"]).shape == (90, 120, 3)
    assert pixels(hist).shape == (200, 480, 3)
    assert pixels(review).shape == (90, 120, 3)
    assert 0.0 < threshold < 1.0
    assert "region" in summary and "(about " in summary and "threshold" in summary
    assert regions.startswith("No regions")  # auto masks nothing with the low model
    assert Path(record).name == "photo.faceerase.json" and json.loads(Path(record).read_text())["edits"] == {
        "kept": [], "added": []}


def test_post_processing_controls_reuse_the_cached_probabilities(client, photo):
    erase(client, photo, size=384)
    for method in ("inpaint_telea", "inpaint_ns", "blur", "mosaic", "solid"):
        result, summary = erase(client, photo, size=384, method=method, mode="fixed", fixed=0.001)[4:6]
        assert "network skipped" in summary, method
        assert pixels(result).shape == (90, 120, 3)
    for mode in ("auto", "seed", "fixed"):
        _, _, threshold, _, _, summary = erase(client, photo, size=384, mode=mode, fixed=0.42)[:6]
        assert "network skipped" in summary, mode
        assert threshold == pytest.approx(0.42) if mode == "fixed" else threshold != pytest.approx(0.42)
    for shape in ("ellipse", "box"):
        assert "network skipped" in erase(client, photo, size=384, mode="seed", shape=shape, dilation=5)[5]
    assert "network skipped" not in erase(client, photo, size=512)[5]  # a new input size re-runs it


def test_faceless_image_auto_masks_nothing_but_seed_masks_something(client, tmp_path):
    grey = tmp_path / "grey.png"
    write_image(grey, size=(96, 96), value=128)
    _, _, threshold, overlay, result, summary = erase(client, grey, mode="auto", method="solid")[:6]
    assert threshold >= 0.3 and overlay["annotations"] == []
    assert summary.startswith("**0 regions (about 0 faces)**")
    assert np.array_equal(pixels(result), np.full((96, 96, 3), 128, np.uint8))
    _, _, threshold, overlay, result, _ = erase(client, grey, mode="seed", method="solid")[:6]
    assert threshold < 0.3 and len(overlay["annotations"]) == 1
    assert (pixels(result) == 0).all(axis=-1).any()


def test_corrupt_upload_gives_a_clear_error_and_the_app_keeps_serving(client, photo, tmp_path):
    broken, empty = tmp_path / "broken.jpg", tmp_path / "empty.png"
    broken.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 20)
    empty.write_bytes(b"")
    with pytest.raises(gradio_client.exceptions.AppError, match="Cannot read this file: broken.jpg"):
        erase(client, broken)
    assert pixels(erase(client, photo)[4]).shape == (90, 120, 3)
    with pytest.raises(gradio_client.exceptions.AppError, match=r"Cannot read this file: empty.png is empty"):
        erase(client, empty)
    assert pixels(erase(client, photo)[4]).shape == (90, 120, 3)


def test_uploads_over_the_pixel_limit_are_refused_with_the_limit(client, photo, tmp_path):
    huge = tmp_path / "huge.png"
    Image.new("L", (10_000, 4_100), 128).save(huge)  # 41 megapixels, a few kB
    with pytest.raises(gradio_client.exceptions.AppError,
                       match="huge.png is 10000x4100 = 41,000,000 pixels, over the limit of 40,000,000 pixels"):
        erase(client, huge)
    with pytest.raises(gradio_client.exceptions.AppError, match="over the limit of 40,000,000 pixels"):
        client.predict(gradio_client.handle_file(str(huge)), "blur", api_name="/erase_frame")
    assert pixels(erase(client, photo)[4]).shape == (90, 120, 3)


def test_model_load_failure_is_shown_in_the_page(app_urls):
    with urllib.request.urlopen(app_urls["broken"] + "config", timeout=10) as response:
        config = json.load(response)
    texts = [c.get("props", {}).get("value") for c in config["components"]]
    assert any(isinstance(t, str) and "could not be loaded" in t and "no model folder" in t for t in texts)
    client = gradio_client.Client(app_urls["broken"], verbose=False)
    with pytest.raises(gradio_client.exceptions.AppError, match="model is not loaded"):
        client.predict(gradio_client.handle_file(str(Path(__file__).parents[1] / "faceerase/examples/coffee.jpg")),
                       *CONTROLS.values(), api_name="/erase")


def test_concurrent_identical_requests_all_succeed(app_urls, tmp_path):
    """Identical outputs of concurrent requests must not be rewritten while another request downloads them."""
    noisy = tmp_path / "noisy.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)).save(noisy)
    users, requests = 8, 3

    def user(index: int) -> list[str]:
        client = gradio_client.Client(app_urls["ok"], verbose=False, download_files=tmp_path / f"u{index}")
        errors = []
        for _ in range(requests):
            try:
                result = erase(client, noisy, mode="seed", method="solid")[4]
                assert pixels(result).shape == (480, 640, 3)
            except Exception as error:  # noqa: BLE001  (every failure is counted)
                errors.append(repr(error))
        return errors

    with ThreadPoolExecutor(users) as pool:
        errors = [e for errs in pool.map(user, range(users)) for e in errs]
    assert errors == [], f"{len(errors)} of {users * requests} requests failed: {errors[:3]}"


def test_frame_endpoint_anonymizes_one_image_and_the_stream_is_not_in_the_api(client, photo):
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == {
        "/erase", "/erase_frame", "/review"}
    result = client.predict(gradio_client.handle_file(str(photo)), "solid", api_name="/erase_frame")
    assert pixels(result).shape == (90, 120, 3)


def test_every_setting_of_the_image_tab_reaches_its_eraser(client, photo, low_model_dir):
    """The tab's own controls, then each of "More settings" by its setting's name: the page shows what FaceEraser
    gives with those settings."""
    import app
    from faceerase.erase.pipeline import FaceEraser
    from faceerase.model.settings import EraseSettings, format_setting

    settings = EraseSettings(input_size=256, upscale=True, extra_scales=(0.5,), threshold_mode="seed",
                             threshold_value=0.5, threshold_floor=0.2, threshold_ceiling=0.7, dilation=2,
                             dilation_ratio=0.1, min_area=3, mask_shape="ellipse", method="solid", color=(0, 255, 0),
                             mosaic_blocks=4, blur_strength=0.5)
    more = {name: getattr(settings, name) for name in app.MORE_CONTROLS}
    more = {name: format_setting(value) if isinstance(value, tuple) else value for name, value in more.items()}
    result, summary = client.predict(gradio_client.handle_file(str(photo)), "seed", 0.5, "solid", 2, "ellipse",
                                     256, **more, api_name="/erase")[4:6]
    expected = FaceEraser(low_model_dir, settings=settings)(photo)
    assert expected.mask.any() and "at 256 px" in summary
    assert np.array_equal(pixels(result), expected.anonymized)
    assert not np.array_equal(pixels(result), pixels(erase(client, photo)[4]))  # the page's defaults mask nothing
    with pytest.raises(gradio_client.exceptions.AppError, match="Invalid setting: need 0 <= threshold_floor"):
        client.predict(gradio_client.handle_file(str(photo)), threshold_floor=0.9, threshold_ceiling=0.1,
                       api_name="/erase")


@pytest.mark.parametrize("name, save_as, expected", [
    ("holiday photo.jpg", "JPEG", ("holiday_photo-anonymized.jpg", "JPEG")),
    ("scan.png", "PNG", ("scan-anonymized.png", "PNG")),
    ("shot.webp", "WEBP", ("shot-anonymized.webp", "WEBP")),
    ("old.bmp", "BMP", ("old-anonymized.png", "PNG")),
])
def test_the_download_is_named_after_the_upload_in_its_format(client, tmp_path, name, save_as, expected):
    upload = tmp_path / name
    write_image(tmp_path / "source.png", size=(120, 90))
    Image.open(tmp_path / "source.png").save(upload, format=save_as)
    result = erase(client, upload, mode="seed", method="solid")[4]
    with Image.open(result) as image:
        assert (Path(result).name, image.format) == expected
        assert (pixels(result) == 0).all(axis=-1).any()  # the anonymized image, not the upload


def test_sessions_uploading_the_same_name_get_their_own_files(app_urls, tmp_path):
    """Each request writes its files in a folder of its own: a later upload of the same name by another session
    neither replaces nor reveals the first one's result."""
    results = {}
    for user, value in (("alice", 40), ("bob", 200)):
        (tmp_path / user).mkdir()
        write_image(tmp_path / user / "photo.png", size=(96, 80), value=value)
        client = gradio_client.Client(app_urls["ok"], verbose=False, download_files=False)
        results[user] = erase(client, tmp_path / user / "photo.png", method="solid")[4]  # auto masks nothing here
    assert results["alice"]["path"] != results["bob"]["path"]
    for user, value in (("alice", 40), ("bob", 200)):
        assert Path(results[user]["path"]).name == "photo-anonymized.png"
        with urllib.request.urlopen(results[user]["url"], timeout=10) as response:
            image = np.asarray(Image.open(response).convert("RGB"))
        assert (image == value).all(), user


def test_each_threshold_mode_and_method_is_explained_in_plain_words_next_to_its_control(app_urls):
    import app
    from faceerase.erase.thresholds import THRESHOLD_MODES

    assert set(app.MODE_WORDS) == set(THRESHOLD_MODES)
    assert set(app.PAGE_METHODS) <= set(app.METHOD_WORDS), "a method the page offers has no plain words"
    with urllib.request.urlopen(app_urls["ok"] + "config", timeout=10) as response:
        info = {c["props"].get("elem_id"): c["props"].get("info") for c in json.load(response)["components"]}
    for mode, words in app.MODE_WORDS.items():
        assert f"{mode}: {words.split(',')[0]}" in info["threshold-mode"]
    assert "0.3-0.6" in info["threshold-mode"]  # the low model's auto range (the default settings)
    for method in app.PAGE_METHODS:
        assert "{}: {}".format(*app.METHOD_WORDS[method]) in info["method"]


def test_the_threshold_used_is_hidden_until_there_is_an_image(app_urls):
    with urllib.request.urlopen(app_urls["ok"] + "config", timeout=10) as response:
        props = {c["props"].get("elem_id"): c["props"] for c in json.load(response)["components"]}
    assert props["threshold-used"]["visible"] is False


def test_the_histogram_has_a_log_count_axis_and_marks_the_threshold():
    import app

    prob = np.zeros(100_000, np.float32)
    prob[:10] = 0.905  # ten pixels in bin 90 against 99,990 in bin 0: a linear axis would draw them 0 px high
    canvas = app.histogram(prob, threshold=0.42)
    red = np.all(canvas == app.THRESHOLD_RGB, axis=-1)
    assert set(np.flatnonzero(red[60:150].all(axis=0))) & {app.threshold_x(0.42), app.threshold_x(0.42) + 1}
    blue = np.all(canvas == (70, 110, 200), axis=-1)
    bin_90 = blue[:, app.threshold_x(0.905)].sum()
    bin_0 = blue[:, app.threshold_x(0.005)].sum()
    assert 0.15 < bin_90 / bin_0 < 0.25  # log(11) / log(99,991) ~ 0.21
    grid = np.all(canvas[:, app.threshold_x(0.505)] == (225, 225, 225), axis=-1)  # an empty bin's column
    assert grid.sum() == 6  # a line at each power of ten: 1, 10, ..., 100,000
