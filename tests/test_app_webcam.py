"""The app's webcam tab on the server side: what a streamed frame comes back as, and the frame rate it reports (the
page itself: ``test_browser.py``)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow  # Gradio alone takes seconds to import

CONTROLS = dict(method="solid", live_input_size=96, temporal_window=1, threshold_mode="seed")  # seed: masks something


def decoded(payload: dict) -> np.ndarray:
    """The pixels of an image payload whose URL holds a JPEG."""
    prefix = "data:image/jpeg;base64,"
    assert payload["url"].startswith(prefix)
    with Image.open(io.BytesIO(base64.b64decode(payload["url"][len(prefix):]))) as image:
        assert image.format == "JPEG"
        return np.asarray(image.convert("RGB"))


def test_a_streamed_frame_comes_back_anonymized_in_the_payload_and_nothing_is_written(
        low_model_dir, face_image, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    import app

    handlers = app.Handlers(*app.load(str(low_model_dir)), max_pixels=10**7)
    payload, readout, state = handlers.stream_frame(face_image, None, **CONTROLS)
    eraser = handlers.eraser(handlers.settings_of(CONTROLS).live())
    expected = eraser.postprocess(face_image, eraser.predict([face_image])[0]).anonymized
    masked = (expected != face_image).any(axis=-1)
    assert masked.sum() > 20 and (expected[masked] == 0).all()  # the solid fill, black
    assert payload["path"] is None  # no file: nothing for Gradio to serve or keep
    pixels = decoded(payload).astype(int)
    assert pixels.shape == face_image.shape
    assert np.abs(pixels - expected).mean() < 4  # the anonymized frame, but for the JPEG encoding
    assert pixels[masked].mean() < 20 < face_image[masked].mean()
    assert "frames/s" in readout and "ms per frame (96 px network input)" in readout
    assert list((tmp_path / "gradio").rglob("*")) == []
    assert handlers.stream_frame(face_image, state, **CONTROLS)[2] is state  # the stream keeps its state


def test_the_frame_rate_counts_the_frames_sent_back_over_its_window():
    import app

    rate = app.FrameRate(window=2.0)
    assert rate(10.0) == 0  # one frame: no rate yet
    assert [rate(10.0 + 0.25 * i) for i in range(1, 5)] == [4.0] * 4
    assert rate(12.5) == pytest.approx(3 / 2.0)  # 10.5, 10.75, 11.0 and 12.5 in the last 2 s
    assert rate(20.0) == 0  # after a pause, the frames before it no longer count


def test_frames_with_the_same_settings_share_one_eraser_and_the_cache_stays_bounded(low_model_dir, monkeypatch):
    import app

    handlers = app.Handlers(*app.load(str(low_model_dir)), max_pixels=10**7)
    live = handlers.settings_of(CONTROLS).live()
    first = handlers.eraser(live)
    assert handlers.eraser(live) is first  # a webcam frame does not build an eraser (milliseconds each)
    other = handlers.eraser(handlers.settings_of({**CONTROLS, "method": "blur"}).live())
    assert other is not first and other.settings.method == "blur" and first.settings.method == "solid"
    monkeypatch.setattr(app, "MAX_ERASERS", 2)
    handlers.eraser(handlers.settings_of({**CONTROLS, "method": "mosaic"}).live())
    assert handlers.eraser(live) is not first  # the least recently used of three was dropped
