"""Shared fixtures: a tiny untrained model (and its saved folder), a synthetic face image, the low model of
:mod:`fixtures_app` (saved once), the ``faceerase`` command in-process, and the app served in this process.

Test modules import plain helpers (file writers, :class:`fixtures_app.AppServer`) from :mod:`fixtures_app`; fixtures
live here only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from faceerase import cli
from faceerase.erase.pipeline import DEFAULT_MODEL_DIR, ONNX_NAME
from faceerase.model.network import FaceEraseUNet
from faceerase.model.onnx_model import export_onnx
from fixtures_app import make_low_model

FACE_CENTER, FACE_AXES = (60, 50), (26, 34)


@pytest.fixture
def tiny_model() -> FaceEraseUNet:
    """The ``live`` preset shrunk to 4 base channels and depth 2, seeded, in eval mode."""
    torch.manual_seed(0)
    return FaceEraseUNet.from_preset("live", base_channels=4, depth=2).eval()


@pytest.fixture
def tiny_model_dir(tiny_model, tmp_path):
    """``tiny_model`` saved with ``save_pretrained`` (config.json + model.safetensors)."""
    folder = tmp_path / "tiny-model"
    tiny_model.save_pretrained(folder)
    return folder


@pytest.fixture
def face_mask() -> np.ndarray:
    """Bool (100, 120) mask of the face ellipse in :func:`face_image`."""
    mask = np.zeros((100, 120), np.uint8)
    cv2.ellipse(mask, FACE_CENTER, FACE_AXES, 0, 0, 360, 1, thickness=-1)
    return mask.astype(bool)


@pytest.fixture
def face_image(face_mask) -> np.ndarray:
    """RGB uint8 (100, 120) image: a smooth bluish background and a face-like ellipse with a
    fine two-tone skin texture (identity detail that erasing must destroy), eyes and a mouth."""
    h, w = face_mask.shape
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([40 + xx // 3, 90 + yy // 2, 170 + 0 * xx], axis=-1).astype(np.uint8)
    checker = ((yy // 3 + xx // 3) % 2).astype(bool)
    image[face_mask & checker] = (235, 190, 160)
    image[face_mask & ~checker] = (120, 70, 50)
    cx, cy = FACE_CENTER
    for ex in (cx - 11, cx + 11):
        cv2.circle(image, (ex, cy - 8), 4, (20, 20, 20), thickness=-1)
    cv2.ellipse(image, (cx, cy + 16), (10, 4), 0, 0, 360, (150, 20, 30), thickness=-1)
    return image


@pytest.fixture(scope="session")
def low_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with :func:`fixtures_app.make_low_model` saved by ``save_pretrained`` and its ``model.onnx``, as the
    shipped model has it: the onnx backend (the default) loads that file instead of exporting the model again in
    every command."""
    folder = tmp_path_factory.mktemp("low-model")
    model = make_low_model()
    model.save_pretrained(folder)
    export_onnx(model, folder / ONNX_NAME)
    return folder


@pytest.fixture
def run(low_model_dir: Path, capsys: pytest.CaptureFixture) -> Callable[..., tuple[int, str, str]]:
    """Run ``faceerase ARGS --model <low model> --input-size 64`` in-process; returns (exit code, stdout, stderr)."""
    def run(*args: str | Path) -> tuple[int, str, str]:
        code = cli.main([str(a) for a in args] + ["--model", str(low_model_dir), "--input-size", "64"])
        out, err = capsys.readouterr()
        return code, out, err
    return run


@pytest.fixture(scope="session")
def app_urls(low_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The app served in this process as ``python app.py`` serves it (``app.build_demo`` and ``app.launch``), at
    three URLs: ``ok`` on the low model, ``broken`` on a model that cannot load, ``shipped`` on the embedded model
    (``hub/``: real faces found, for the review). Gradio's files go to a temporary folder of the session; the servers
    stop at its end."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
        env.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        env.delenv("GRADIO_SERVER_PORT", raising=False)  # a free port each
        env.delenv("FACEERASE_MAX_PIXELS", raising=False)
        import app  # here: Gradio takes seconds to import, and only the tests of the app need it

        demos = {"ok": app.build_demo(str(low_model_dir)),
                 "broken": app.build_demo(str(tmp_path_factory.mktemp("app") / "no-such-model")),
                 "shipped": app.build_demo(str(DEFAULT_MODEL_DIR))}
        try:
            for demo in demos.values():
                app.launch(demo, server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
            yield {name: demo.local_url for name, demo in demos.items()}
        finally:
            for demo in demos.values():
                demo.close()
