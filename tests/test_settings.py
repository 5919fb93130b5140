"""Per-model inference settings: saved with the model, read back as the defaults of FaceEraser, the CLI and the
app; a model without them falls back to the documented defaults and says so."""

import json
import warnings

import cv2
import numpy as np
import pytest

from faceerase.cli import main as cli_main
from faceerase.masks import refine_mask
from faceerase.pipeline import FaceEraser, ModelLoadError, load_model
from faceerase.settings import DEFAULT_SETTINGS, SETTINGS_NAME, InferenceSettings
from faceerase.thresholds import compute_threshold

CALIBRATED = InferenceSettings(input_size=96, extra_scales=(0.5,), live_input_size=64, threshold_floor=0.45,
                               threshold_ceiling=0.7, dilation=3, dilation_ratio=0.2, min_area=5,
                               source="test calibration")


@pytest.fixture
def calibrated_dir(tiny_model, tmp_path):
    tiny_model.inference_settings = CALIBRATED
    tiny_model.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_settings_are_saved_with_the_model_and_read_back(calibrated_dir):
    assert json.loads((calibrated_dir / SETTINGS_NAME).read_text())["threshold_floor"] == 0.45
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a calibrated model loads without the fallback warning
        model = load_model(calibrated_dir)
    assert model.settings == CALIBRATED and model.settings.extra_scales == (0.5,)


def test_eraser_takes_its_defaults_from_the_model_and_arguments_override(calibrated_dir):
    eraser = FaceEraser(calibrated_dir, device="cpu")
    assert eraser.input_size == 96 and eraser.settings.extra_scales == (0.5,)
    o = eraser.options
    assert (o.threshold_floor, o.threshold_ceiling, o.dilation, o.dilation_ratio, o.min_area) == (
        0.45, 0.7, 3, 0.2, 5)
    custom = FaceEraser(calibrated_dir, device="cpu", input_size=0, dilation=0, extra_scales=(),
                        threshold_floor=0.8)
    assert custom.input_size == 0 and custom.options.dilation == 0 and custom.settings.extra_scales == ()
    assert custom.options.threshold_floor == 0.8 and custom.options.threshold_ceiling == 0.8


def test_model_without_settings_uses_defaults_and_warns(tiny_model_dir):
    assert not (tiny_model_dir / SETTINGS_NAME).exists()
    with pytest.warns(UserWarning, match="has no inference.json: using the default inference settings"):
        model = load_model(tiny_model_dir)
    assert model.inference_settings is None and model.settings == DEFAULT_SETTINGS
    assert FaceEraser(model).input_size == DEFAULT_SETTINGS.input_size


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"dilation": -1}', "must be >= 0"),
    ('{"threshold_floor": 0.9, "threshold_ceiling": 0.5}', "threshold_floor <= threshold_ceiling"),
    ('{"new_knob": 1}', r"unknown settings \['new_knob'\]"),
])
def test_invalid_settings_file_is_a_one_line_load_error(calibrated_dir, content, message):
    (calibrated_dir / SETTINGS_NAME).write_text(content)
    with pytest.raises(ModelLoadError, match=message) as info:
        load_model(calibrated_dir)
    assert "\n" not in str(info.value)


def test_extra_scales_take_the_pixelwise_maximum(tiny_model, face_image):
    both = FaceEraser(tiny_model, device="cpu", input_size=96, extra_scales=(0.5,)).predict([face_image])[0]
    full = FaceEraser(tiny_model, device="cpu", input_size=96, extra_scales=()).predict([face_image])[0]
    half = FaceEraser(tiny_model, device="cpu", input_size=48, extra_scales=()).predict([face_image])[0]
    np.testing.assert_allclose(both, np.maximum(full, half), atol=1e-6)


def test_dilation_ratio_grows_each_region_by_its_own_size():
    mask = np.zeros((200, 300), bool)
    mask[20:40, 30:50] = True      # 20 px box: grows by max(2, 0.25 * 20) = 5
    mask[100:180, 150:250] = True  # 100 px box: grows by 25
    mask[5, 290] = True            # 1 px: grows by the fixed 2
    grown = refine_mask(mask, dilation=2, dilation_ratio=0.25)
    expected = np.zeros_like(mask)
    for box, radius in (((slice(20, 40), slice(30, 50)), 5), ((slice(100, 180), slice(150, 250)), 25),
                        ((slice(5, 6), slice(290, 291)), 2)):
        region = np.zeros_like(mask)
        region[box] = True
        expected |= cv2.distanceTransform((~region).view(np.uint8), cv2.DIST_L2, 5) <= radius
    np.testing.assert_array_equal(grown, expected)
    assert grown[mask].all() and not grown[:, 0].any()


def test_threshold_ceiling_bounds_auto():
    prob = np.zeros((50, 50), np.float32)
    prob[10:20, 10:20] = 1.0  # Otsu lands near 0.5
    assert compute_threshold(prob, "auto", floor=0.1, ceiling=0.2) == pytest.approx(0.2)
    assert compute_threshold(prob, "auto", floor=0.7, ceiling=0.9) == pytest.approx(0.7)


def test_cli_report_records_the_models_settings(calibrated_dir, face_image, tmp_path):
    source = tmp_path / "in.png"
    cv2.imwrite(str(source), face_image[:, :, ::-1])
    report = tmp_path / "audit.jsonl"
    code = cli_main(["anonymize", str(source), "-o", str(tmp_path / "out.png"), "--model", str(calibrated_dir),
                     "--device", "cpu", "--report", str(report)])
    assert code == 0
    record = json.loads(report.read_text().splitlines()[0])
    settings = record["settings"]
    assert settings["input_size"] == 96 and settings["extra_scales"] == [0.5]
    assert settings["threshold_floor"] == 0.45 and settings["dilation"] == 3


def test_small_images_are_not_upscaled_unless_the_settings_say_so(tiny_model, face_image):
    def network_sides(eraser: FaceEraser) -> list[tuple[int, int]]:
        seen, forward = [], eraser._network
        eraser._network = lambda batch: seen.append(batch.shape[1:3]) or forward(batch)
        eraser.predict([face_image])
        return seen

    assert network_sides(FaceEraser(tiny_model, device="cpu", input_size=256, extra_scales=(0.5,))) == [
        (100, 120), (50, 60)]  # 120 px long side < 256: runs at its own size, and at half of it
    tiny_model.inference_settings = InferenceSettings(input_size=240, upscale=True)
    assert network_sides(FaceEraser(tiny_model, device="cpu", extra_scales=())) == [(200, 240)]
