"""load_model and FaceEraser with real forward passes through a tiny model."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import huggingface_hub.constants
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import faceerase
from faceerase.erase.pipeline import DEFAULT_REPO_ID, EraseResult, FaceEraser, ModelLoadError, load_model, select_device
from faceerase.media.images import InvalidImageError
from faceerase.model import loading
from faceerase.model.network import FaceEraseUNet
from faceerase.model.settings import EraseSettings
from faceerase.training.widerface import WIDERFACE_ENV, default_widerface_root


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """No network and an empty Hub cache."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def _states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_load_model_from_a_folder(tiny_model, tiny_model_dir):
    model = load_model(tiny_model_dir, device="cpu")
    assert not model.training and next(model.parameters()).device.type == "cpu"
    assert _states_equal(model, tiny_model)
    assert _states_equal(load_model(str(tiny_model_dir)), tiny_model)


def test_default_model_is_the_embedded_folder(monkeypatch, tiny_model, tiny_model_dir):
    monkeypatch.setattr(loading, "DEFAULT_MODEL_DIR", tiny_model_dir)
    assert _states_equal(load_model(), tiny_model)


def test_default_model_falls_back_to_the_hub(monkeypatch, tmp_path, offline_hub):
    monkeypatch.setattr(loading, "DEFAULT_MODEL_DIR", tmp_path / "empty-hub")
    with pytest.raises(ModelLoadError, match=f"could not download {DEFAULT_REPO_ID}.*HF_HUB_OFFLINE"):
        load_model()


def test_unreachable_repo_id_gives_a_clear_error(offline_hub):
    with pytest.raises(ModelLoadError) as info:
        load_model("someone/some-model", revision="v1")
    message = str(info.value)
    assert "could not download someone/some-model (revision v1)" in message
    assert "pass a local model folder" in message and "\n" not in message


def _corrupt_weights(folder):
    (folder / "model.safetensors").write_bytes(b"\x00garbage" * 10)


def _mismatched_config(folder):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "base_channels": 8}))


def _missing_tensor(folder):
    weights = load_file(folder / "model.safetensors")
    del weights["head.bias"]
    save_file(weights, folder / "model.safetensors")


def _invalid_config(folder):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "stem_stride": 3}))


@pytest.mark.parametrize("break_folder, message", [
    (lambda f: (f / "model.safetensors").unlink(), "has no model.safetensors"),
    (lambda f: (f / "config.json").unlink(), "has no config.json"),
    (_corrupt_weights, "weights of .* are unreadable"),
    (_mismatched_config, r"do not match its config \(size mismatch for .*\)"),
    (_missing_tensor, r"do not match its config \(.*head\.bias.*\); config.json and model.safetensors"),
    (_invalid_config, "config of .* is invalid: stem_stride must be 1, 2 or 4"),
    (lambda f: (f / "config.json").write_text("{not json"), "not valid JSON"),
])
def test_broken_model_folders_give_one_line_errors(tiny_model_dir, break_folder, message):
    break_folder(tiny_model_dir)
    with pytest.raises(ModelLoadError, match=message) as info:
        load_model(tiny_model_dir)
    assert "\n" not in str(info.value)


def test_missing_folder_and_invalid_name(tmp_path):
    with pytest.raises(ModelLoadError, match="no model folder"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(ModelLoadError, match="no model folder"):
        load_model("./nowhere/")
    with pytest.raises(ModelLoadError, match="neither a local model folder nor a valid"):
        load_model("not a repo!!")


def test_eraser_round_trip(tiny_model, face_image):
    eraser = FaceEraser(tiny_model, input_size=64)
    assert eraser.device == select_device() and not eraser.model.training
    result = eraser(face_image)
    assert isinstance(result, EraseResult)
    assert result.probabilities.dtype == np.float32 and result.probabilities.shape == (100, 120)
    assert 0 <= result.probabilities.min() and result.probabilities.max() <= 1
    assert result.mask.dtype == bool and result.mask.shape == (100, 120)
    assert result.anonymized.dtype == np.uint8 and result.anonymized.shape == face_image.shape
    assert isinstance(result.threshold, float)
    np.testing.assert_array_equal(result.image, face_image)
    np.testing.assert_array_equal(result.anonymized[~result.mask], face_image[~result.mask])
    assert sum(r.area for r in result.regions) == result.mask.sum()


def test_input_size_resizes_for_the_network_and_back(tiny_model, face_image):
    prob = FaceEraser(tiny_model, device="cpu", input_size=48).predict([face_image])[0]
    small = cv2.resize(face_image, (48, 40), interpolation=cv2.INTER_AREA)
    expected = tiny_model.predict_proba(torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255)[0]
    expected = cv2.resize(expected.numpy(), (120, 100), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(prob, expected, atol=1e-5)
    native = FaceEraser(tiny_model, device="cpu", input_size=0).predict([face_image])[0]
    direct = tiny_model.predict_proba(torch.from_numpy(face_image).permute(2, 0, 1)[None].float() / 255)[0]
    np.testing.assert_allclose(native, direct.numpy(), atol=1e-6)


@pytest.mark.parametrize("input_size", [0, 48])
def test_network_output_a_hair_outside_0_1_is_clipped(tiny_model, face_image, monkeypatch, input_size):
    """onnxruntime's sigmoid returns 1.0000001 for large logits: the map must still hold probabilities, at the
    network's size and after resizing, so that thresholding and post-processing accept it."""
    eraser = FaceEraser(tiny_model, device="cpu", input_size=input_size)
    def network(x: np.ndarray) -> np.ndarray:  # (B, H, W, 3) in, (B, H, W) out: left half 1.0000001, right -1e-7
        out = np.full(x.shape[:3], -1e-7, np.float32)
        out[:, :, : x.shape[2] // 2] = np.float32(1.0000001)
        return out

    monkeypatch.setattr(eraser, "_network", network)
    prob = eraser.predict([face_image])[0]
    assert prob.min() >= 0 and prob.max() <= 1 and prob.max() == 1
    assert eraser.postprocess(face_image, prob).mask.any()


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_batch_equals_single_and_groups_equal_sizes(tiny_model, face_image, monkeypatch, backend):
    images = [face_image, face_image[:, ::-1], face_image[:80], face_image[::-1], face_image[10:90, 20:]]
    eraser = FaceEraser(tiny_model, input_size=0, batch_size=2, backend=backend)
    single = [eraser(image) for image in images]
    batch_sizes = []
    forward = eraser._network
    monkeypatch.setattr(eraser, "_network", lambda x: batch_sizes.append(len(x)) or forward(x))
    batched = eraser.erase_batch(images)
    assert sorted(batch_sizes) == [1, 1, 1, 2]
    for a, b in zip(single, batched):
        assert a.probabilities.shape == b.probabilities.shape
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(a.anonymized, b.anonymized)


def test_erasers_made_at_once_in_threads_share_one_onnx_export(tiny_model):
    """A web server builds erasers from concurrent requests; torch.onnx.export fails when run concurrently."""
    def make(size: int) -> FaceEraser:
        return FaceEraser(tiny_model, input_size=size, backend="onnx")

    with ThreadPoolExecutor(4) as pool:
        erasers = list(pool.map(make, [64, 96, 128, 160]))
    assert len({id(eraser.runner) for eraser in erasers}) == 1


def test_exif_rotated_jpeg_gives_probabilities_in_the_rotated_shape(tiny_model, face_image, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 8
    path = tmp_path / "rotated.jpg"
    Image.fromarray(face_image).save(path, quality=95, exif=exif)
    result = FaceEraser(tiny_model, input_size=64)(path)
    assert result.probabilities.shape == (120, 100) and result.anonymized.shape == (120, 100, 3)


def test_postprocess_overrides_apply_to_one_call(tiny_model, face_image):
    eraser = FaceEraser(tiny_model, input_size=64, method="blur")
    prob = eraser.predict([face_image])[0]
    everything = eraser.postprocess(face_image, prob, threshold_mode="fixed", threshold_value=0.0,
                                    method="solid", color=(0, 255, 0), min_area=0, dilation=0)
    assert everything.threshold == 0.0 and everything.mask.all()
    assert (everything.anonymized == (0, 255, 0)).all()
    assert len(everything.regions) == 1 and everything.regions[0].box == (0, 0, 120, 100)
    assert eraser.settings == EraseSettings(input_size=64, method="blur").resolved(tiny_model.settings)
    seed = eraser.postprocess(face_image, prob, threshold_mode="seed", mask_shape="box")
    assert seed.mask.any() and seed.threshold == pytest.approx(float(np.histogram(prob)[1][6]))
    for region in seed.regions:
        x, y, w, h = region.box
        assert seed.mask[y:y + h, x:x + w].all()


def test_face_less_probabilities_erase_nothing_with_auto(tiny_model, face_image):
    eraser = FaceEraser(tiny_model, input_size=64)
    result = eraser.postprocess(face_image, np.full((100, 120), 0.1, np.float32))
    assert not result.mask.any() and result.regions == []
    np.testing.assert_array_equal(result.anonymized, face_image)


@pytest.mark.slow
def test_grayscale_model_and_model_folder(tiny_model_dir, face_image):
    torch.manual_seed(0)
    gray = FaceEraseUNet.from_preset("seed", base_channels=4, depth=2)
    assert FaceEraser(gray, input_size=32).predict([face_image])[0].shape == (100, 120)
    assert FaceEraser(tiny_model_dir, input_size=32)(face_image).mask.shape == (100, 120)


def test_bad_inputs_and_settings(tiny_model, face_image, tmp_path):
    eraser = FaceEraser(tiny_model, input_size=32)
    with pytest.raises(InvalidImageError, match="not a recognised image"):
        eraser(b"definitely not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InvalidImageError, match="empty"):
        eraser.erase_batch([face_image, tmp_path / "empty.png"])
    with pytest.raises(TypeError, match="list of images"):
        eraser.predict(face_image)
    prob = np.zeros((100, 120), np.float32)
    with pytest.raises(ValueError, match="does not match image size"):
        eraser.postprocess(face_image, prob[:50])
    with pytest.raises(TypeError, match="unexpected keyword"):
        eraser.postprocess(face_image, prob, strength=3)
    with pytest.raises(ValueError, match="unknown method"):
        eraser.postprocess(face_image, prob, method="smear")
    with pytest.raises(ValueError, match="needs threshold_value"):
        FaceEraser(tiny_model, threshold_mode="fixed")
    with pytest.raises(ValueError, match="unknown mask_shape"):
        FaceEraser(tiny_model, mask_shape="circle")
    with pytest.raises(ValueError, match="input_size"):
        FaceEraser(tiny_model, input_size=8)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        FaceEraser(tiny_model, threads=0)
    with pytest.raises(ValueError, match="unknown method"):  # before any model is loaded
        FaceEraser("no/such-model-anywhere", method="smear")


@pytest.mark.slow
@pytest.mark.parametrize("photo, regions, faces", [
    (Path(faceerase.__file__).parent / "examples" / "astronaut.jpg", 1, 1),
    (default_widerface_root() / "WIDER_val/images/19--Couple/19_Couple_Couple_19_90.jpg", 1, 2),
])
def test_the_shipped_model_counts_the_faces_of_merged_regions_on_real_photos(photo, regions, faces):
    """A couple whose faces touch: one region, about two faces (issue 19, item 5)."""
    if not photo.is_file():
        pytest.skip(f"{photo} not found (WIDER FACE: set {WIDERFACE_ENV})")
    result = FaceEraser(backend="onnx")(photo)
    assert len(result.regions) == regions and sum(r.faces for r in result.regions) == faces
