"""Calibration (faceerase.training.calibration, ``faceerase calibrate``): the rule's choice on score tables written
here, its configuration as command-line options, and the command end to end on real WIDER FACE train images."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceerase import cli
from faceerase.erase.pipeline import DEFAULT_MODEL_DIR, load_model
from faceerase.model.settings import SETTINGS_NAME, InferenceSettings
from faceerase.training.calibration import LIMITED, SCALE_SETS, CalibrationConfig, choose, improves
from faceerase.training.widerface import WIDERFACE_ENV, default_widerface_root, parse_annotations, split_paths

WIDERFACE = default_widerface_root()  # $FACEERASE_WIDERFACE, else ../shared/widerface
LIMITS = [0.9, 0.5, 2.0]  # percent: the rule's collateral, mean and worst face-less limits


def _row(recall: float, collateral: float, negatives: float = 0.0, worst: float = 0.0, name: str = "") -> dict:
    return {"name": name, "recall": recall, "collateral_%": collateral, "negatives_%": negatives,
            "negatives_worst_%": worst}


def test_choice_is_the_highest_recall_within_every_limit():
    rows = [_row(0.95, 1.2, name="too much collateral"), _row(0.94, 0.5, negatives=0.6, name="too much on pets"),
            _row(0.93, 0.4, worst=2.5, name="one pet photo masked"), _row(0.90, 0.8, name="allowed"),
            _row(0.85, 0.1, name="allowed, lower recall")]
    best, limits = choose(rows, LIMITS)
    assert best["name"] == "allowed" and limits == LIMITS


def test_recall_ties_to_three_decimals_go_to_the_lower_collateral_then_to_the_grid_order():
    rows = [_row(0.8004, 0.7, name="higher collateral"), _row(0.8001, 0.3, name="lower collateral"),
            _row(0.7994, 0.1, name="lower recall at three decimals")]
    assert choose(rows, LIMITS)[0]["name"] == "lower collateral"
    rows = [_row(0.8, 0.3, name="first"), _row(0.8, 0.3, name="second")]
    assert choose(rows, LIMITS)[0]["name"] == "first"


def test_limits_double_together_until_a_candidate_meets_them():
    rows = [_row(0.9, 2.0, negatives=0.4, name="collateral 2.0%"), _row(0.95, 1.5, negatives=1.1, name="pets 1.1%")]
    best, limits = choose(rows, LIMITS)
    assert limits == [3.6, 2.0, 8.0]  # doubled twice: the first row needs 1.8 -> 3.6 on collateral
    assert best["name"] == "pets 1.1%"  # the higher recall, allowed under the doubled limits too
    infeasible = [_row(0.5, 0.2, worst=3.0, name="worst 3%")]
    assert choose(infeasible, LIMITS) == (infeasible[0], [1.8, 1.0, 4.0])


@pytest.mark.parametrize("recall, collateral, verdict", [
    (0.829, 0.71, True),    # +0.005 recall at the same collateral
    (0.829, 0.81, True),    # +0.005 recall for +0.1 point of collateral, the most it may cost
    (0.828, 0.88, False),   # candidate 3: +0.004 recall for +0.17 point
    (0.834, 0.82, False),   # +0.01 recall but +0.11 point of collateral
    (0.821, 0.61, True),    # recall within the margin, collateral 0.1 point lower
    (0.824, 0.65, False),   # same recall, collateral lower by less than the margin
    (0.819, 0.30, False),   # recall lower by the margin: no collateral saving buys it back
])
def test_a_candidate_improves_on_the_shipped_model_only_by_the_written_margins(recall, collateral, verdict):
    shipped = _row(0.824, 0.71)  # hub/'s chosen row in results/calibration_hub.md, rounded
    assert improves(_row(recall, collateral), shipped) is verdict


@pytest.mark.parametrize("rows, limits, message", [
    ([], LIMITS, "no candidates"),
    ([_row(0.9, 0.1)], [0.9, 0.0, 2.0], "limits above 0"),
    ([_row(0.9, float("nan"))], LIMITS, "finite numbers"),
])
def test_choice_refuses_what_has_no_answer(rows, limits, message):
    with pytest.raises(ValueError, match=message):
        choose(rows, limits)


def test_the_rules_defaults_are_the_commands_and_options_give_the_configuration_back():
    rule = CalibrationConfig()
    grid = (rule.scale_sets, rule.floors, rule.dilations, rule.ratios, rule.min_areas)
    assert [SCALE_SETS[name] for name in rule.scale_sets] == [(), (0.5,), (0.5, 0.25)]
    assert grid[1:] == ((0.3, 0.4, 0.5), (0, 4, 8), (0.0, 0.15), (16, 64))
    assert np.prod([len(values) for values in grid]) == 108 and rule.limits == pytest.approx(LIMITS)
    assert (rule.images, rule.input_size, rule.min_face_height, rule.ceiling) == (200, 1024, 10, 0.6)
    assert len(LIMITED) == len(rule.limits)

    parser = cli.build_parser()

    def parsed(options: list[str]) -> CalibrationConfig:
        args = parser.parse_args(["calibrate", "m", "--data", "d", "--negatives", "n", *options])
        return CalibrationConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(CalibrationConfig)})

    assert parsed([]) == rule and rule.options() == []
    custom = CalibrationConfig(images=7, negative_images=3, input_size=0, scale_sets=("none",), floors=(0.45,),
                               dilations=(2, 6), ratios=(0.1,), min_areas=(0,), min_face_height=16,
                               live_input_size=256, max_collateral=0.01, max_negative=0.004, max_negative_worst=0.03)
    assert parsed(custom.options()) == custom
    assert custom.options()[:4] == ["--images", "7", "--negative-images", "3"]


@pytest.mark.parametrize("changes, message", [
    ({"floors": ()}, "floors: give at least one candidate"),
    ({"scale_sets": ("0.33",)}, r"unknown \['0.33'\]"),
    ({"ceiling": 1.5}, r"\[0, 1\]"),
    ({"max_negative": 0.0}, "must be > 0"),
])
def test_configuration_refuses_values_without_an_answer(changes, message):
    with pytest.raises(ValueError, match=message):
        CalibrationConfig(**changes)


def test_command_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    (tmp_path / "wider").mkdir()
    (tmp_path / "no-photos").mkdir()
    model = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, model, ignore=shutil.ignore_patterns("*.md"))
    common = ["--data", str(tmp_path / "wider"), "--negatives", str(tmp_path / "no-photos")]
    cases = [(["calibrate", "owner/model", *common, "--write"], 2, "--write writes into a local model folder"),
             (["calibrate", str(model), "--data", str(tmp_path / "none"), "--negatives", "n"], 2,
              "WIDER FACE folder not found"),
             (["calibrate", str(model), *common, "--floors", "1.5"], 2, r"floors and ceiling must lie in \[0, 1\]"),
             (["calibrate", str(model), *common, "--write"], 1, "no face-less photos in")]
    for argv, code, message in cases:
        assert cli.main(argv) == code
        err = capsys.readouterr().err.strip()
        assert message.replace("\\", "") in err.replace("\\", "") and "\n" not in err and "Traceback" not in err
    assert (model / SETTINGS_NAME).read_text() == (DEFAULT_MODEL_DIR / SETTINGS_NAME).read_text()


@pytest.fixture
def wider_train(tmp_path, monkeypatch) -> Path:
    """WIDER FACE in its official layout with the first three real train images whose largest valid face is at
    least 40 px high (linked from the shared WIDER FACE folder), and their annotations; the Arrow cache in
    ``tmp_path``."""
    if not WIDERFACE.is_dir():
        pytest.skip(f"WIDER FACE not found at {WIDERFACE} (set {WIDERFACE_ENV} to its folder)")
    monkeypatch.setenv("FACEERASE_CACHE", str(tmp_path / "cache"))
    images, annotations = split_paths(WIDERFACE, "train")
    records = [(name, rows) for name, rows in parse_annotations(annotations)
               if len(rows) and rows[rows[:, 7] == 0, 3].max(initial=0) >= 40][:3]
    root = tmp_path / "wider"
    own_images, own_annotations = split_paths(root, "train")
    lines = []
    for name, rows in records:
        (own_images / name).parent.mkdir(parents=True, exist_ok=True)
        (own_images / name).symlink_to((images / name).resolve())
        lines += [name, str(len(rows)), *(" ".join(map(str, row)) for row in rows)]
    own_annotations.parent.mkdir(parents=True)
    own_annotations.write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def face_less(tmp_path) -> Path:
    """Three generated face-less photos: smooth noise, a colour gradient and stripes."""
    folder = tmp_path / "negatives"
    folder.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:240, 0:320]
    noise = np.asarray(Image.fromarray(rng.integers(0, 256, (30, 40, 3), np.uint8)).resize((320, 240)))
    gradient = np.stack([xx * 255 // 319, yy * 255 // 239, 255 - xx * 255 // 319], -1).astype(np.uint8)
    stripes = np.repeat(((xx // 12) % 2 * 200 + 30)[..., None], 3, axis=-1).astype(np.uint8)
    for name, pixels in (("noise.png", noise), ("gradient.jpg", gradient), ("stripes.png", stripes)):
        Image.fromarray(pixels).save(folder / name)
    (folder / "notes.txt").write_text("not a photo")
    return folder


@pytest.mark.slow
def test_calibrate_command_writes_the_chosen_settings_into_the_model_folder(wider_train, face_less, tmp_path,
                                                                            capsys):
    """``faceerase calibrate`` on three real train images, the generated photos and a copy of the shipped model, with
    a one-candidate grid: the report scores it, --write puts it in inference.json, and the model loads with it."""
    model = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, model, ignore=shutil.ignore_patterns("*.md"))
    report, page = tmp_path / "calibration.json", tmp_path / "calibration.md"
    code = cli.main(["calibrate", str(model), "--data", str(wider_train), "--negatives", str(face_less),
                     "--input-size", "512", "--scale-sets", "none", "--floors", "0.4", "--dilations", "2",
                     "--ratios", "0", "--min-areas", "16", "--write", "--json", str(report), "--markdown", str(page),
                     "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(report.read_text())
    assert (data["n_images"], data["n_negatives"], len(data["rows"])) == (3, 3, 1)
    row = data["rows"][0]
    assert data["best"] == row and row["floor"] == 0.4 and row["dilation"] == 2
    assert row["recall"] >= 0.5 and 0 <= row["collateral_%"] <= 100 and row["negatives_worst_%"] < 100
    k = round(np.log2(data["limits_used_%"][0] / LIMITS[0]))  # the rule's limits, doubled k times together
    assert k >= 0 and data["limits_used_%"] == pytest.approx([limit * 2 ** k for limit in LIMITS])
    assert all(row[key] <= limit for key, limit in zip(LIMITED, data["limits_used_%"]))
    assert page.read_text().startswith(f"# Inference calibration of `{model}`") and "Chosen:" in out
    assert f"wrote {model / SETTINGS_NAME}" in out

    written = InferenceSettings.from_file(model / SETTINGS_NAME)
    expected = dataclasses.replace(load_model(DEFAULT_MODEL_DIR).settings, input_size=512, extra_scales=(),
                                   threshold_floor=0.4, threshold_ceiling=0.6, dilation=2, dilation_ratio=0.0,
                                   min_area=16, live_input_size=320)
    assert written == expected and written.source == data["command"] == data["settings"]["source"]
    assert written.source == (f"faceerase calibrate {model} --data {wider_train} --negatives {face_less} "
                              "--input-size 512 --scale-sets none --floors 0.4 --dilations 2 --ratios 0.0 "
                              "--min-areas 16")
    assert load_model(model).inference_settings == written
