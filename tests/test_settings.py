"""Settings: per-model inference settings saved with the model and read back as the defaults of FaceEraser, the CLI
and the app (a model without them falls back to the documented defaults and says so); one EraseSettings that every
surface takes whole, checked in one place."""

import json
import pickle
import warnings
from dataclasses import fields, replace

import cv2
import numpy as np
import pytest
from PIL import Image

from faceerase import cli
from faceerase.cli import build_parser
from faceerase.cli import main as cli_main
from faceerase.erase.masks import refine_mask
from faceerase.erase.pipeline import EraserSpec, FaceEraser, ModelLoadError, load_model
from faceerase.erase.thresholds import compute_threshold
from faceerase.media.video import VideoSummary
from faceerase.model.settings import (DEFAULT_SETTINGS, SETTINGS_NAME, EraseSettings, InferenceSettings, format_setting,
                                      parse_setting)
from fixtures_app import write_image

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
    s = eraser.settings
    assert (s.threshold_floor, s.threshold_ceiling, s.dilation, s.dilation_ratio, s.min_area) == (
        0.45, 0.7, 3, 0.2, 5)
    custom = FaceEraser(calibrated_dir, device="cpu", input_size=0, dilation=0, extra_scales=(),
                        threshold_floor=0.8)
    assert custom.input_size == 0 and custom.settings.dilation == 0 and custom.settings.extra_scales == ()
    assert custom.settings.threshold_floor == 0.8 and custom.settings.threshold_ceiling == 0.8


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


# --------------------------------------------------------------------------- one settings type (issue 17, item 1)

def every_setting(threshold: float) -> EraseSettings:
    """Every setting at a value other than its default (``threshold``: the fixed threshold)."""
    return EraseSettings(input_size=64, upscale=True, extra_scales=(0.5, 0.75), live_input_size=48,
                         threshold_mode="fixed", threshold_value=threshold, threshold_floor=0.2, threshold_ceiling=0.7,
                         dilation=2, dilation_ratio=0.1, min_area=3, mask_shape="ellipse", method="solid",
                         color=(0, 255, 0), mosaic_blocks=4, blur_strength=0.5, replace_with="picture.png",
                         draw_boxes=True, temporal_window=2)


# Each setting's option and its value in every_setting: a setting missing here, or an option that sets nothing,
# fails test_every_setting_is_an_option_of_every_command.
CLI_OPTIONS = {
    "input_size": ["--input-size", "64"], "upscale": ["--upscale"], "extra_scales": ["--extra-scales", "0.5,0.75"],
    "live_input_size": ["--live-input-size", "48"], "threshold_mode": ["--threshold", "{threshold}"],
    "threshold_value": [], "threshold_floor": ["--threshold-floor", "0.2"],
    "threshold_ceiling": ["--threshold-ceiling", "0.7"], "dilation": ["--dilation", "2"],
    "dilation_ratio": ["--dilation-ratio", "0.1"], "min_area": ["--min-area", "3"],
    "mask_shape": ["--mask-shape", "ellipse"],
    "method": ["--method", "solid"], "color": ["--color", "0,255,0"], "mosaic_blocks": ["--mosaic-size", "4"],
    "blur_strength": ["--blur-strength", "0.5"], "replace_with": ["--replace-with", "picture.png"],
    "draw_boxes": ["--draw-boxes"], "temporal_window": ["--temporal-window", "2"],
}


def cli_options(threshold: float) -> list[str]:
    return [arg.format(threshold=threshold) for args in CLI_OPTIONS.values() for arg in args]


def test_every_setting_is_an_option_of_every_command():
    assert set(CLI_OPTIONS) == {f.name for f in fields(EraseSettings)}
    expected = every_setting(0.25)
    defaults = EraseSettings().resolved(DEFAULT_SETTINGS)
    assert all(getattr(expected, f.name) != getattr(defaults, f.name) for f in fields(EraseSettings))
    parser = build_parser()
    for command in (["anonymize", "in.png", "-o", "out"], ["anonymize-dataset", "src", "-o", "out"],
                    ["evaluate", "--data", "wider"]):
        assert cli._eraser_spec(parser.parse_args(command + cli_options(0.25))).settings == expected, command
        assert cli._eraser_spec(parser.parse_args(command)).settings == EraseSettings(), command


def test_the_report_records_the_settings_whole_and_the_output_follows_them(low_model_dir, tmp_path):
    write_image(tmp_path / "in.png", size=(160, 120))
    prob = FaceEraser(low_model_dir, settings=every_setting(0.5)).predict([tmp_path / "in.png"])[0]
    settings = every_setting(float(np.unique(prob)[-2]))  # below the map's top value: masks the pixels at it
    code = cli_main(["anonymize", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--model",
                     str(low_model_dir), "--report", str(tmp_path / "report.jsonl"),
                     *cli_options(settings.threshold_value)])
    assert code == 0
    record = json.loads((tmp_path / "report.jsonl").read_text())
    assert record["settings"] == settings.to_dict() and EraseSettings(**record["settings"]) == settings
    expected = FaceEraser(low_model_dir, settings=settings)(tmp_path / "in.png")
    assert 0 < expected.mask.mean() < 1 and (expected.anonymized[expected.mask] == (0, 255, 0)).all()
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png")), expected.anonymized)


def test_one_settings_object_is_used_as_is_by_the_eraser_and_its_picklable_spec(low_model_dir, face_image):
    settings = every_setting(0.5)
    eraser = FaceEraser(low_model_dir, settings=settings)
    assert eraser.settings == settings and eraser.input_size == 64
    spec = pickle.loads(pickle.dumps(EraserSpec(str(low_model_dir), settings=settings, batch_size=2)))
    assert spec.settings == settings and spec.build().settings == settings
    np.testing.assert_array_equal(spec.build()(face_image).anonymized, eraser(face_image).anonymized)
    assert FaceEraser(low_model_dir, settings=settings, method="blur").settings == replace(settings, method="blur")
    assert EraserSpec.of(low_model_dir, settings=settings, method="blur", device="cpu") == EraserSpec(
        str(low_model_dir), settings=replace(settings, method="blur"), device="cpu")


def test_settings_left_to_the_model_are_resolved_from_its_inference_json():
    assert EraseSettings(dilation=1).resolved(CALIBRATED) == replace(
        EraseSettings(**CALIBRATED.values()), dilation=1)
    assert EraseSettings(threshold_floor=0.8).resolved(CALIBRATED).threshold_ceiling == 0.8  # raised to the floor
    assert EraseSettings(threshold_ceiling=0.3).resolved(CALIBRATED).threshold_floor == 0.3  # lowered to it
    resolved = every_setting(0.5).resolved(CALIBRATED)
    assert resolved == every_setting(0.5) and resolved.resolved(DEFAULT_SETTINGS) == resolved
    assert resolved.live() == replace(resolved, input_size=48, extra_scales=())
    with pytest.raises(TypeError, match="unexpected keyword argument 'strength'"):
        EraseSettings().updated(strength=3)


@pytest.mark.parametrize("values, message", [
    ({"dilation": -1}, "dilation must be >= 0, got -1"),
    ({"input_size": 8}, "input_size must be 0 .* or at least 16, got 8"),
    ({"extra_scales": (5,)}, r"extra_scales must lie in \(0, 4\)"),
    ({"threshold_floor": 0.9, "threshold_ceiling": 0.5}, "threshold_floor <= threshold_ceiling"),
    ({"threshold_mode": "fixed"}, "needs threshold_value"),
    ({"color": (0, 0, 256)}, "color must be three RGB values"),
    ({"mosaic_blocks": 0}, "mosaic_blocks must be >= 1"),
    ({"temporal_window": 0}, "temporal_window must be >= 1"),
    ({"method": "smear"}, "unknown method 'smear'"),
])
def test_every_check_is_made_in_one_place(values, message):
    with pytest.raises(ValueError, match=message):
        EraseSettings(**values)
    calibrated = {k: v for k, v in values.items() if k in DEFAULT_SETTINGS.values()}
    if calibrated == values:  # the model's settings are checked by the same code
        with pytest.raises(ValueError, match=message):
            InferenceSettings(**calibrated)


def test_every_setting_reads_back_from_its_text():
    settings = every_setting(0.25)
    for f in fields(EraseSettings):
        if f.name not in ("threshold_mode", "threshold_value"):  # one text sets both
            value = getattr(settings, f.name)
            assert parse_setting(f.name, format_setting(value)) == {f.name: value}
    assert parse_setting("threshold_mode", "0.25") == {"threshold_mode": "fixed", "threshold_value": 0.25}
    assert parse_setting("threshold_mode", "seed") == {"threshold_mode": "seed", "threshold_value": None}
    assert parse_setting("extra_scales", "none") == {"extra_scales": ()}
    assert parse_setting("color", "#ff8000") == {"color": (255, 128, 0)}
    for name, text, message in [("dilation", "two", "expected an integer"), ("upscale", "maybe", "expected on or off"),
                                ("threshold_mode", "1.5", r"fixed threshold must be in \(0, 1\)")]:
        with pytest.raises(ValueError, match=message):
            parse_setting(name, text)


def test_the_webcam_runs_at_the_live_input_size_unless_the_options_say_otherwise(low_model_dir, tmp_path,
                                                                                 monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "_camera_frames", lambda index, limit: iter([np.zeros((48, 64, 3), np.uint8)]))
    monkeypatch.setattr(cli, "write_anonymized_video", lambda eraser, frames, out, fps, **kw: seen.append(
        (eraser.settings, kw["temporal_window"])) or VideoSummary(frames=1))
    command = ["anonymize", "--webcam", "-o", str(tmp_path / "cam.mp4"), "--model", str(low_model_dir),
               "--live-input-size", "32", "--temporal-window", "5"]
    assert cli_main(command) == 0 and cli_main(command + ["--input-size", "64", "--extra-scales", "0.5"]) == 0
    (live, window), (given, _) = seen
    assert (live.input_size, live.extra_scales, window) == (32, (), 5)
    assert (given.input_size, given.extra_scales) == (64, (0.5,))
