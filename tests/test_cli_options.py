"""What deface users expect of the command line: --version, --quiet, the mosaic and blur strengths, the per-region
growth, onnxruntime execution providers; a quick offline failure; no torch on the default backend; one status word;
transparency kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import huggingface_hub.constants
import numpy as np
import pytest
from PIL import Image

from faceerase import cli
from faceerase.erase.pipeline import ONNX_NAME, FaceEraser, ModelLoadError, load_model
from faceerase.model import runners
from fixtures_app import write_image, write_video

MISSING_REPO = "nobody-faceerase/not-in-any-cache"


def low_eraser(model_dir: Path, **options) -> FaceEraser:
    """The eraser the ``run`` fixture's command builds (low model, 64 px), with ``options``."""
    return FaceEraser(model_dir, input_size=64, **options)


def records(report: Path) -> list[dict]:
    return [json.loads(line) for line in report.read_text().splitlines()]


# ------------------------------------------------------------ issue 19, item 2: offline Hub ids fail at once

@pytest.fixture
def empty_hub_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("no_network", ["HF_HUB_OFFLINE", "unresolvable host"])
def test_a_hub_id_not_in_the_cache_fails_at_once_without_a_network(no_network, monkeypatch, empty_hub_cache):
    if no_network == "HF_HUB_OFFLINE":
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        reason = "offline (HF_HUB_OFFLINE is set)"
    else:  # .invalid never resolves (RFC 6761): as without a network, where the retries took 25 s
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "https://hub.faceerase.invalid")
        reason = "offline (hub.faceerase.invalid cannot be resolved"
    for load in (FaceEraser, load_model):
        start = time.perf_counter()
        with pytest.raises(ModelLoadError) as info:
            load(MISSING_REPO)
        assert time.perf_counter() - start < 2.5
        message = str(info.value)
        assert MISSING_REPO in message and reason in message and "not in the Hugging Face cache" in message
        assert "\n" not in message


@pytest.mark.slow
def test_hf_hub_offline_fails_at_once_in_the_command(tmp_path):
    """The command as users run it: HF_HUB_OFFLINE=1 in the environment, a repo id that is not cached."""
    write_image(tmp_path / "a.png")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf-cache")}
    script = ("import sys, time\nfrom faceerase import cli\nstart = time.perf_counter()\n"
              f"code = cli.main(['anonymize', {str(tmp_path / 'a.png')!r}, '-o', {str(tmp_path / 'out')!r}, "
              f"'--model', {MISSING_REPO!r}])\n"
              "print(code, round(time.perf_counter() - start, 3))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    code, seconds = done.stdout.split()
    assert code == "2" and float(seconds) < 2.5, done.stderr
    error, = [line for line in done.stderr.splitlines() if line.startswith("faceerase: error:")]
    assert MISSING_REPO in error and "offline (HF_HUB_OFFLINE is set)" in error


# ------------------------------------------------------------ issue 19, item 3: no torch on the default backend

@pytest.mark.slow
@pytest.mark.skipif(runners._gpu_driver_present(), reason="a GPU driver is loaded: auto asks torch for CUDA")
def test_the_default_backend_on_an_up_to_date_model_onnx_never_imports_torch(low_model_dir, tmp_path):
    assert (low_model_dir / ONNX_NAME).is_file()
    write_image(tmp_path / "a.png")
    script = ("import sys\nfrom faceerase import FaceEraser\n"
              f"eraser = FaceEraser({str(low_model_dir)!r}, input_size=64)\n"
              f"result = eraser({str(tmp_path / 'a.png')!r})\n"
              "print(eraser.backend, type(eraser.model).__name__, 'torch' in sys.modules, result.anonymized.shape)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "onnx OnnxFaceModel False (60, 80, 3)"


def test_the_default_backend_exports_with_torch_when_the_folder_has_no_model_onnx(tiny_model_dir, tmp_path):
    write_image(tmp_path / "a.png")
    eraser = low_eraser(tiny_model_dir, device="cpu")
    assert eraser.backend == "onnx" and type(eraser.model).__name__ == "FaceEraseUNet"  # exported in memory
    assert eraser(tmp_path / "a.png").anonymized.shape == (60, 80, 3)


# ------------------------------------------------------------ issue 19, item 4: options

def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == "faceerase 0.1.0"
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "--version" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["anonymize", "--help"])
    help_text = capsys.readouterr().out
    for option in ("--quiet", "--mosaic-size", "--blur-strength", "--dilation-ratio", "--execution-provider"):
        assert option in help_text


def test_quiet_drops_the_progress_bars_but_not_the_errors(run, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "a.png")
    write_video(src / "clip.mp4")
    (src / "broken.png").write_bytes(b"not a png")
    code, out, err = run("anonymize", src, "-o", tmp_path / "loud")
    assert code == 1 and "files: " in err and "clip.mp4: " in err  # the bars over the files and the frames
    code, out, err = run("anonymize", src, "-o", tmp_path / "quiet", "--quiet")
    assert code == 1 and "%|" not in err and "files: " not in err and "clip.mp4: " not in err
    assert f"error: {src / 'broken.png'}" in err and "3 files: 2 anonymized, 1 failed" in out


@pytest.mark.parametrize("method, option, value, setting",
                         [("mosaic", "--mosaic-size", "2", {"mosaic_blocks": 2}),
                          ("blur", "--blur-strength", "1.5", {"blur_strength": 1.5})])
def test_mosaic_size_and_blur_strength(method, option, value, setting, run, low_model_dir, tmp_path):
    write_image(tmp_path / "a.png", size=(96, 72))
    code, _, err = run("anonymize", tmp_path / "a.png", "-o", tmp_path / "default.png", "--method", method,
                       "--threshold", "seed")
    assert code == 0, err
    code, _, err = run("anonymize", tmp_path / "a.png", "-o", tmp_path / "set.png", "--method", method,
                       "--threshold", "seed", option, value, "--report", tmp_path / "report.jsonl")
    assert code == 0, err
    expected = low_eraser(low_model_dir, threshold_mode="seed", method=method, **setting)(tmp_path / "a.png")
    written = np.asarray(Image.open(tmp_path / "set.png"))
    assert expected.mask.any() and np.array_equal(written, expected.anonymized)
    assert not np.array_equal(written, np.asarray(Image.open(tmp_path / "default.png")))
    assert records(tmp_path / "report.jsonl")[0]["settings"].items() >= setting.items()


def test_dilation_ratio_grows_each_region(run, tmp_path):
    write_image(tmp_path / "a.png", size=(160, 120))
    areas = {}
    for ratio in ("0", "0.5"):
        report = tmp_path / f"{ratio}.jsonl"
        code, _, err = run("anonymize", tmp_path / "a.png", "-o", tmp_path / f"{ratio}.png", "--threshold", "seed",
                           "--dilation", "0", "--dilation-ratio", ratio, "--report", report)
        assert code == 0, err
        record, = records(report)
        assert record["settings"]["dilation_ratio"] == float(ratio)
        areas[ratio] = sum(region["area"] for region in record["regions"])
    assert 0 < areas["0"] < areas["0.5"]


def test_execution_provider(run, tmp_path, capsys):
    write_image(tmp_path / "a.png")
    code, _, err = run("anonymize", tmp_path / "a.png", "-o", tmp_path / "out.png", "--execution-provider",
                       "CPUExecutionProvider", "--report", tmp_path / "report.jsonl")
    assert code == 0, err
    assert records(tmp_path / "report.jsonl")[0]["model"]["backend"] == "onnx"
    with pytest.raises(SystemExit) as exit_:
        run("anonymize", tmp_path / "a.png", "-o", tmp_path / "x.png", "--execution-provider", "NoSuchProvider")
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "unknown execution provider 'NoSuchProvider'; available here:" in error and "CPUExecutionProvider" in error
    code, _, err = run("anonymize", tmp_path / "a.png", "-o", tmp_path / "y.png", "--backend", "torch",
                       "--execution-provider", "CPUExecutionProvider")
    assert code == 2 and "--execution-provider is for the onnx backend" in err


# ------------------------------------------------------------ issue 19, item 6: one status word

def test_records_say_anonymized_and_resume_appends_to_an_old_report(run, tmp_path):
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png", value=128)
    report = tmp_path / "report.jsonl"
    old = {"timestamp": "2026-01-01T00:00:00+00:00", "input": str(tmp_path / "a.png"), "status": "ok"}
    report.write_text(json.dumps(old) + "\n")  # written by an older FaceErase
    run("anonymize", tmp_path / "a.png", "-o", tmp_path / "out")
    code, out, err = run("anonymize", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "out", "--resume",
                         "--report", report)
    assert code == 0, err
    assert "2 files: 1 anonymized, 0 failed, 1 skipped" in out
    assert [r["status"] for r in records(report)] == ["ok", "skipped", "anonymized"]


# ------------------------------------------------------------ issue 19, item 7: transparency

def rgba_png(path: Path) -> np.ndarray:
    """A 96x72 RGBA PNG: a picture under an alpha ramp, a fully transparent band on the left; returns its pixels."""
    write_image(path.with_suffix(".rgb.png"), size=(96, 72))
    rgb = np.asarray(Image.open(path.with_suffix(".rgb.png")))
    alpha = np.tile(np.linspace(40, 255, 96).astype(np.uint8), (72, 1))
    alpha[:, :16] = 0
    rgba = np.dstack([rgb, alpha])
    Image.fromarray(rgba, "RGBA").save(path)
    return rgba


@pytest.mark.parametrize("suffix", [".png", ".webp"])
def test_transparency_is_kept(suffix, run, low_model_dir, tmp_path):
    rgba = rgba_png(tmp_path / "in.png")
    code, _, err = run("anonymize", tmp_path / "in.png", "-o", tmp_path / f"out{suffix}", "--threshold", "seed",
                       "--method", "solid")
    assert code == 0, err
    with Image.open(tmp_path / f"out{suffix}") as image:
        assert image.mode == "RGBA"
        written = np.asarray(image)
    expected = low_eraser(low_model_dir, threshold_mode="seed", method="solid")(rgba[:, :, :3])
    assert expected.mask.any() and not expected.mask.all()
    if suffix == ".png":
        assert np.array_equal(written, np.dstack([expected.anonymized, rgba[:, :, 3]]))
    else:  # lossy colours, lossless alpha
        assert np.array_equal(written[:, :, 3], rgba[:, :, 3])
        assert np.abs(written[:, :, :3].astype(int) - expected.anonymized).mean() < 3


def test_outputs_without_alpha_are_composited_over_white(run, tmp_path):
    rgba = rgba_png(tmp_path / "in.png")
    code, _, err = run("anonymize", tmp_path / "in.png", "-o", tmp_path / "out.bmp")
    assert code == 0, err
    written = np.asarray(Image.open(tmp_path / "out.bmp"))
    assert written.shape == (72, 96, 3) and (written[:, :16] == 255).all()  # the transparent band
    alpha = rgba[:, 16:, 3:] / 255
    assert np.abs(written[:, 16:] - (rgba[:, 16:, :3] * alpha + 255 * (1 - alpha))).max() <= 1


# ------------------------------------------------------------ issue 19, item 4: --replace-with, none, --draw-boxes

PICTURE = Path(__file__).resolve().parents[1] / "faceerase" / "examples" / "coffee.jpg"


def test_replace_with_puts_the_picture_into_each_region_and_nothing_else_changes(run, low_model_dir, tmp_path):
    write_image(tmp_path / "a.png", size=(96, 72))
    code, _, err = run("anonymize", tmp_path / "a.png", "-o", tmp_path / "out.png", "--threshold", "seed",
                       "--method", "image", "--replace-with", PICTURE, "--report", tmp_path / "report.jsonl")
    assert code == 0, err
    expected = low_eraser(low_model_dir, threshold_mode="seed", method="image", replace_with=str(PICTURE))(
        tmp_path / "a.png")
    written = np.asarray(Image.open(tmp_path / "out.png"))
    np.testing.assert_array_equal(written, expected.anonymized)
    np.testing.assert_array_equal(written[~expected.mask], expected.image[~expected.mask])
    x, y, w, h = expected.regions[0].box
    picture = cv2.resize(np.asarray(Image.open(PICTURE)), (w, h), interpolation=cv2.INTER_AREA)
    region = expected.mask[y:y + h, x:x + w]
    assert region.any() and np.array_equal(written[y:y + h, x:x + w][region], picture[region])
    assert records(tmp_path / "report.jsonl")[0]["settings"]["replace_with"] == str(PICTURE)


@pytest.mark.parametrize("options, message", [
    (["--replace-with", "missing.png"], "cannot read the replacement image missing.png: no such file"),
    ([], "the method image needs replace_with"),
])
def test_replace_with_a_missing_picture_is_a_usage_error(options, message, run, tmp_path):
    write_image(tmp_path / "a.png")
    code, _, err = run("anonymize", tmp_path / "a.png", "-o", tmp_path / "out.png", "--method", "image", *options)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "out.png").exists()


def test_method_none_records_the_regions_and_writes_nothing(run, low_model_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "a.png", size=(96, 72))
    write_video(src / "clip.mp4")
    code, out, err = run("anonymize", src, "-o", tmp_path / "out", "--threshold", "seed", "--method", "none",
                         "--report", tmp_path / "report.jsonl")
    assert code == 1 and not (tmp_path / "out").exists()
    image, video = records(tmp_path / "report.jsonl")
    expected = low_eraser(low_model_dir, threshold_mode="seed")(src / "a.png")
    assert image["status"] == "analyzed" and image["output"] is None and image["settings"]["method"] == "none"
    assert [r["box"] for r in image["regions"]] == [list(r.box) for r in expected.regions] != []
    assert image["threshold"] == pytest.approx(expected.threshold, abs=1e-4)
    assert video["status"] == "failed" and video["error"] == "the method none analyses images only: choose " \
                                                             "another method for videos"
    assert "2 files: 0 anonymized, 1 analyzed (no image written), 1 failed, 0 skipped" in out
    code, _, err = run("anonymize", "--webcam", "-o", tmp_path / "cam.mp4", "--method", "none")
    assert code == 2 and "--method none writes no video" in err


def test_draw_boxes_outlines_each_region_with_its_score_and_changes_nothing_else(run, low_model_dir, tmp_path):
    from faceerase.erase.overlay import BOX_COLOR

    write_image(tmp_path / "a.png", size=(160, 120))
    for name, options in (("plain", []), ("boxes", ["--draw-boxes"])):
        code, _, err = run("anonymize", tmp_path / "a.png", "-o", tmp_path / f"{name}.png", "--threshold", "seed",
                           "--method", "solid", "--color", "0,0,255", *options)
        assert code == 0, err
    plain, boxes = (np.asarray(Image.open(tmp_path / f"{name}.png")) for name in ("plain", "boxes"))
    regions = low_eraser(low_model_dir, threshold_mode="seed")(tmp_path / "a.png").regions
    assert regions
    inside_a_box = np.zeros(plain.shape[:2], bool)
    for region in regions:
        x, y, w, h = region.box
        inside_a_box[y:y + h, x:x + w] = True
        for outline in (boxes[y, x:x + w], boxes[y + h - 1, x:x + w], boxes[y:y + h, x], boxes[y:y + h, x + w - 1]):
            assert (outline == BOX_COLOR).all()
    changed = (plain != boxes).any(axis=-1)
    assert changed.any() and not (changed & ~inside_a_box).any()


def test_method_none_is_refused_for_a_dataset(run, tmp_path):
    src = tmp_path / "images"
    src.mkdir()
    write_image(src / "a.png")
    code, _, err = run("anonymize-dataset", src, "-o", tmp_path / "out", "--method", "none")
    assert code == 2 and "the method none writes no images: choose another method for a dataset" in err
    assert not (tmp_path / "out").exists()


def test_a_video_is_refused_with_method_none(low_model_dir, tmp_path):
    from faceerase.media.video import NO_VIDEO, anonymize_video

    write_video(tmp_path / "clip.mp4")
    with pytest.raises(ValueError, match=NO_VIDEO):
        anonymize_video(low_eraser(low_model_dir, method="none"), tmp_path / "clip.mp4", tmp_path / "out.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
