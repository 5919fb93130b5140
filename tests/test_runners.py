"""faceerase.model.runners: one runner protocol (images in, probabilities out) with a PyTorch and an onnxruntime
implementation, one preparation of the images for both, one cache of loaded models."""

from __future__ import annotations

import gc
import weakref

import cv2
import numpy as np
import pytest
import torch

from faceerase.erase.pipeline import DEFAULT_MODEL_DIR, ONNX_NAME, WEIGHTS_NAME, FaceEraser
from faceerase.media.images import LUMA_WEIGHTS, load_image
from faceerase.model.loading import load_model, load_onnx_model
from faceerase.model.network import FaceEraseUNet
from faceerase.model.onnx_model import export_onnx
from faceerase.model.runners import MAX_NAMED, TorchRunner, load, predict_proba
from faceerase.model.settings import InferenceSettings
from fixtures_app import REPO

EXAMPLES = REPO / "faceerase" / "examples"


@pytest.mark.skipif(not (DEFAULT_MODEL_DIR / ONNX_NAME).is_file() or not (DEFAULT_MODEL_DIR / WEIGHTS_NAME).is_file(),
                    reason="no shipped model with its model.onnx")
def test_torch_and_onnx_runners_give_the_same_probabilities_on_a_real_photo():
    """The shipped weights through both runners, on a photo whose sides are no multiples of the size divisor."""
    image = cv2.resize(load_image(EXAMPLES / "astronaut.jpg"), (301, 257), interpolation=cv2.INTER_AREA)
    batch = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32) / 255
    torch_runner, onnx_runner = TorchRunner(load_model(device="cpu")), load_onnx_model()
    assert torch_runner.size_divisor == onnx_runner.size_divisor and 257 % onnx_runner.size_divisor
    by_torch, by_onnx = predict_proba(torch_runner, batch), predict_proba(onnx_runner, batch)
    assert by_torch.shape == by_onnx.shape == (1, 257, 301) and by_torch.dtype == by_onnx.dtype == np.float32
    assert np.abs(by_torch - by_onnx).max() < 1e-4
    assert by_torch.max() > 0.9 and np.median(by_torch) < 0.1  # a face and a background: real probabilities


class Recorder:
    """A runner that keeps the batches it is given and returns their first channel as probabilities."""

    def __init__(self, in_channels: int, size_divisor: int):
        self.in_channels, self.size_divisor, self.batches = in_channels, size_divisor, []

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.batches.append(images)
        return images[:, 0].copy()


@pytest.mark.parametrize("in_channels", [1, 3])
def test_every_runner_gets_its_channels_padded_to_its_divisor_and_the_probabilities_are_cropped_back(in_channels):
    images = np.random.default_rng(0).random((2, 3, 37, 21), dtype=np.float32)
    runner = Recorder(in_channels, 16)
    probabilities = predict_proba(runner, images)
    [batch] = runner.batches
    assert batch.shape == (2, in_channels, 48, 32) and batch.dtype == np.float32 and batch.flags.c_contiguous
    first = images[:, 0] if in_channels == 3 else np.tensordot(images, np.float32(LUMA_WEIGHTS), axes=([1], [0]))
    np.testing.assert_allclose(probabilities, first, rtol=1e-6)
    np.testing.assert_array_equal(batch[:, 0, 37:, :21], batch[:, 0, 35:24:-1, :21])  # mirrored below
    np.testing.assert_array_equal(batch[:, 0, :, 21:], batch[:, 0, :, 19:8:-1])  # and on the right
    predict_proba(runner, images[:, :, :5, :6])  # padding as large as the image: its edge repeated
    np.testing.assert_array_equal(runner.batches[-1][:, 0, 5:, :6], np.repeat(runner.batches[-1][:, 0, 4:5, :6], 11,
                                                                                axis=1))
    with pytest.raises(ValueError, match=r"expected a \(N, 1 or 3, H, W\) array"):
        predict_proba(runner, images[0])


def test_a_model_folder_is_loaded_once_per_runtime_until_its_files_change(tiny_model, tmp_path):
    folders = [tmp_path / f"model{i}" for i in range(MAX_NAMED + 1)]
    for folder in folders:
        tiny_model.save_pretrained(folder)
        export_onnx(tiny_model, folder / ONNX_NAME)
    first = load(folders[0], backend="onnx")
    assert load(str(folders[0]), backend="onnx") is first and type(first.model).__name__ == "OnnxFaceModel"
    assert FaceEraser(folders[0], backend="onnx").runner is first.runner
    on_torch = load(folders[0], backend="torch", device="cpu")
    assert on_torch is not first and isinstance(on_torch.runner, TorchRunner)
    InferenceSettings(input_size=320, source="rewritten").save(folders[0])
    again = load(folders[0], backend="onnx")
    assert again is not first and again.model.settings.input_size == 320
    for folder in folders[1:]:
        load(folder, backend="onnx")
    assert load(folders[0], backend="onnx") is not again  # the least recently used was dropped


def test_an_in_memory_model_is_exported_once_for_as_long_as_it_lives():
    torch.manual_seed(0)
    model = FaceEraseUNet.from_preset("live", base_channels=4, depth=2)
    loaded = load(model, backend="onnx")
    assert loaded.model is model and load(model, backend="onnx").runner is loaded.runner
    assert load(model, backend="onnx", threads=1).runner is not loaded.runner
    assert isinstance(load(model, backend="torch", device="cpu").runner, TorchRunner)
    runner = weakref.ref(loaded.runner)
    del model, loaded
    gc.collect()
    assert runner() is None
