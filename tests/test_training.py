"""Training loop: real steps on a tiny fixture, checkpoint/resume, saved Hub folder + card, DDP on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from test_data import make_wider_fixture

import train as train_cli
from faceerase.model.network import FaceEraseUNet
from faceerase.training import loop
from faceerase.training.loop import TrainConfig, segmentation_loss, train, validate

REPO = Path(__file__).resolve().parents[1]
TINY = dict(preset="live", model_overrides={"base_channels": 4, "depth": 2}, input_size=128, crop_size=64,
            batch_size=8, device="cpu", workers=1, progress=False, eval_batch_size=4)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    cache = root / "cache"
    old = os.environ.get("FACEERASE_CACHE")
    os.environ["FACEERASE_CACHE"] = str(cache)
    yield make_wider_fixture(root / "wider"), root
    if old is None:
        os.environ.pop("FACEERASE_CACHE")
    else:
        os.environ["FACEERASE_CACHE"] = old


@pytest.fixture(scope="module")
def run(env):
    wider, root = env
    config = TrainConfig(data=str(wider), out_dir=str(root / "run"), steps=30, eval_interval=10, lr=1e-2,
                         warmup_steps=0, schedule="constant", command="python train.py --tiny", **TINY)
    return config, train(config)


def _metrics(out_dir: str) -> list[dict]:
    return [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").read_text().splitlines()]


def test_loss_excludes_ignored_pixels():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 1, 8, 8), (torch.rand(2, 1, 8, 8) > 0.7).float()
    ignore = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    ignore[..., :3] = True
    target[ignore] = 0
    changed = logits.clone()
    changed[ignore] = 50.0
    for kind in ("bce_dice", "seed"):
        assert torch.allclose(segmentation_loss(logits, target, ignore, kind),
                              segmentation_loss(changed, target, ignore, kind))


class _BrightIsFace(torch.nn.Module):
    """A stand-in model whose mask is the bright pixels of the image."""

    in_channels = 3

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images[:, :1] > 0.5).float() * 20 - 10


def test_validation_recall_counts_faces_as_the_evaluation_does():
    from faceerase.training.evaluation import aggregate, score_image
    from faceerase.training.pack import ImageSet
    from faceerase.training.padded import pad_images

    images, boxes = [np.zeros((40, 60, 3), np.uint8), np.zeros((50, 30, 3), np.uint8)], []
    images[0][5:25, 5:25] = images[0][30:40, 40:45] = images[1][10:40, 0:20] = 255
    # covered, half covered (counts), under an invalid face, zero-size, large and partly outside the image
    boxes.append(np.array([[5, 5, 20, 20], [40, 30, 10, 10], [20, 0, 10, 10], [50, 10, 0, 0]], np.float32))
    boxes.append(np.array([[-5, 10, 25, 30], [22, 40, 6, 6]], np.float32))
    invalid = [np.array([False, False, True, False]), np.zeros(2, bool)]
    metrics = validate(_BrightIsFace(), pad_images(ImageSet(images, boxes, invalid, ["a", "b"]), multiple=8),
                       batch_size=1)
    expected = aggregate([score_image(image[..., 0] > 127, {"bbox": b, "invalid": i})
                          for image, b, i in zip(images, boxes, invalid, strict=True)])
    assert metrics["val_faces"] == expected["faces"]["all"] == 5
    assert metrics["val_face_recall"] == expected["recall"]["all"] == 3 / 5
    assert metrics["val_face_recall_16px"] == 1.0  # the two faces at least 16 px wide and high are covered


@pytest.mark.slow
def test_training_steps_lower_the_loss_and_log_validation(run):
    config, summary = run
    records = _metrics(config.out_dir)
    assert [r["step"] for r in records] == [10, 20, 30] and summary["step"] == 30
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    for key in ("val_iou", "val_dice", "val_face_recall", "val_face_recall_16px"):
        assert 0 <= records[-1][key] <= 1
    assert records[-1]["val_images"] == 2 and records[-1]["val_faces"] == 2


@pytest.mark.slow
def test_best_model_folder_loads_and_has_a_card(run):
    config, summary = run
    best = Path(summary["model_dir"])
    model = FaceEraseUNet.from_pretrained(best)
    assert model.encoder.strides == (4, 8, 16)
    assert model.predict_proba(torch.rand(1, 3, 40, 52)).shape == (1, 40, 52)
    card = (best / "README.md").read_text()
    assert "CC BY-NC-ND 4.0" in card and "non-commercial" in card and "license: cc-by-nc-nd-4.0" in card
    assert "python train.py --tiny" in card
    assert f"{summary['best']['val_iou']:.4g}" in card


@pytest.mark.slow
def test_resume_continues_the_step_count(run, tmp_path):
    config, _ = run
    out = tmp_path / "resumed"
    out.mkdir()
    (out / "ckpt.pt").write_bytes((Path(config.out_dir) / "ckpt.pt").read_bytes())
    summary = train(replace(config, out_dir=str(out), steps=40, resume=True))
    assert summary["step"] == 40 and [r["step"] for r in _metrics(str(out))] == [40]
    assert torch.load(out / "ckpt.pt", weights_only=True)["step"] == 40


@pytest.mark.slow
def test_epochs_and_time_budget_without_validation(env, tmp_path):
    wider, _ = env
    by_epochs = train(TrainConfig(data=str(wider), out_dir=str(tmp_path / "e"), epochs=4, val_split=None, **TINY))
    assert by_epochs["step"] == 2  # 4 epochs x 4 images / batch 8
    assert "val_iou" not in by_epochs and (tmp_path / "e" / "best" / "model.safetensors").is_file()
    timed = train(TrainConfig(data=str(wider), out_dir=str(tmp_path / "t"), time_budget=0.5, val_split=None,
                              eval_interval=10**6, **TINY))
    assert timed["step"] >= 1 and timed["elapsed_s"] < 30


def test_push_to_hub_without_token_fails_before_training(env, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(loop, "get_token", lambda: None)
    config = TrainConfig(data=str(tmp_path / "absent"), out_dir=str(tmp_path / "out"), steps=1,
                         push_to_hub="someone/faceerase-test", **TINY)
    with pytest.raises(RuntimeError, match="HF_TOKEN"):
        train(config)
    assert not (tmp_path / "out").exists()


def test_cli_builds_the_config():
    config = train_cli.parse_args(["--data", "packs/x.npz", "--preset", "fast", "--base-channels", "8",
                                   "--time-budget", "600", "--val-split", "none", "--out", "runs/x"])
    assert config.data == "packs/x.npz" and config.model_overrides == {"base_channels": 8}
    assert config.time_budget == 600 and config.val_split is None and config.out_dir == "runs/x"
    assert config.command.startswith("python train.py --data packs/x.npz")


@pytest.mark.slow
def test_two_process_ddp_on_cpu(env, tmp_path):
    wider, root = env
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(REPO / "train.py"), "--data", str(wider), "--preset", "live", "--base-channels", "4",
               "--depth", "2", "--input-size", "128", "--crop-size", "64", "--batch-size", "4", "--steps", "4",
               "--eval-interval", "2", "--device", "cpu", "--workers", "1", "--no-progress", "--out", str(out)]
    env_vars = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, cwd=tmp_path, env=env_vars, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    records = _metrics(str(out))
    assert [r["step"] for r in records] == [2, 4]  # written once, by rank 0
    assert records[-1]["crops_per_s"] > 0
    assert torch.load(out / "ckpt.pt", weights_only=True)["step"] == 4


def test_cli_has_one_option_per_config_field_with_its_help():
    from dataclasses import fields

    text = train_cli.build_parser().format_help()
    for f in fields(TrainConfig):
        if f.metadata.get("help"):
            flag = f.metadata.get("flag") or "--" + ("no-" if f.default is True else "") + f.name.replace("_", "-")
            if f.name != "model_overrides":
                assert flag in text, flag
    config = train_cli.parse_args(["--no-pretrained", "--negatives", "neg", "--scale-range", "0.5", "2",
                                   "--no-bf16", "--compile", "--val-limit", "3", "--target-shape", "ellipse"])
    assert (config.pretrained, config.bf16, config.compile) == (False, False, True)
    assert config.negatives == "neg" and config.scale_range == (0.5, 2.0) and config.val_limit == 3
    assert config.target_shape == "ellipse" and config.model_overrides == {}


def test_old_flags_of_renamed_fields_still_work_with_a_warning(capsys):
    config = train_cli.parse_args(["--image-size", "320", "--mask-shape", "ellipse"])
    assert config.input_size == 320 and config.target_shape == "ellipse"
    assert capsys.readouterr().err.splitlines() == ["train.py: warning: --image-size is deprecated; use --input-size",
                                                    "train.py: warning: --mask-shape is deprecated; use --target-shape"]
    assert "--image-size" not in train_cli.build_parser().format_help()
    with pytest.raises(SystemExit):
        train_cli.parse_args(["--mask-shape", "circle"])


@pytest.mark.slow
def test_checkpoints_with_the_old_field_names_resume_and_rebuild(run, tmp_path):
    config, _ = run
    ckpt = torch.load(Path(config.out_dir) / "ckpt.pt", weights_only=True)
    saved = dict(ckpt["config"])
    saved["image_size"], saved["mask_shape"] = saved.pop("input_size"), saved.pop("target_shape")
    assert TrainConfig.from_dict(saved) == replace(config, scale_range=tuple(saved["scale_range"]))
    assert config.resume_conflicts(saved) == []
    assert replace(config, input_size=96).resume_conflicts(saved) == ["input_size: checkpoint 128, now 96"]
    out = tmp_path / "old"
    out.mkdir()
    torch.save({**ckpt, "config": saved}, out / "ckpt.pt")
    assert train(replace(config, out_dir=str(out), steps=32, resume=True))["step"] == 32


@pytest.mark.slow
def test_resume_refuses_a_checkpoint_trained_with_other_settings(env, tmp_path):
    wider, _ = env
    base = dict(data=str(wider), out_dir=str(tmp_path / "r"), val_split=None, eval_interval=2, **TINY)
    train(TrainConfig(steps=2, **base))
    with pytest.raises(ValueError, match=r"crop_size: checkpoint 64, now 32"):
        train(TrainConfig(steps=4, resume=True, **{**base, "crop_size": 32}))
    assert train(TrainConfig(steps=3, resume=True, **base))["step"] == 3  # the stopping rule may change


def test_model_card_front_matter_comes_from_the_model_class(tmp_path):
    import yaml

    from faceerase.training.card import write_model_card

    model = FaceEraseUNet.from_preset("live", base_channels=4, depth=2)
    write_model_card(tmp_path, {"val_iou": 0.5}, {"input_size": 64}, model_config=model.hub_config)
    model.save_pretrained(tmp_path)  # the mixin keeps the card that is there
    text = (tmp_path / "README.md").read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    declared = FaceEraseUNet._hub_mixin_info.model_card_data
    assert front["license"] == declared.license == "cc-by-nc-nd-4.0"
    assert set(declared.tags) <= set(front["tags"]) and front["datasets"] == ["CUHK-CSE/wider_face"]
    assert '"stem_stride": 4' in text and "non-commercial" in text


def test_bad_negatives_and_settings_are_clear_errors(tmp_path, capsys):
    from faceerase.media.images import InvalidImageError
    from faceerase.training.pack import load_negatives

    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no JPEG or PNG images under"):
        load_negatives(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "cat.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(InvalidImageError, match="cat.jpg"):
        load_negatives(tmp_path / "bad")
    with pytest.raises(ValueError, match=r"negative_fraction must be in \[0, 1\)"):
        TrainConfig(negative_fraction=1.0)
    with pytest.raises(SystemExit) as info:
        train_cli.main(["--data", str(tmp_path / "absent"), "--negatives", str(tmp_path / "empty"), "--steps", "1",
                        "--out", str(tmp_path / "out"), "--no-progress"])
    assert str(info.value).startswith("train.py: error: ") and "\n" not in str(info.value)


@pytest.mark.slow
def test_fine_tuning_starts_from_a_saved_model(run, env, tmp_path):
    from faceerase.model.settings import InferenceSettings

    _, first = run
    source = FaceEraseUNet.from_pretrained(first["model_dir"])
    source.inference_settings = InferenceSettings(input_size=320, source="calibrated for the source weights")
    source.save_pretrained(tmp_path / "source")
    start = loop.build_model(TrainConfig(init_from=str(tmp_path / "source")))
    assert start.training and start.inference_settings is None and start.name_or_path is None
    assert all(torch.equal(a, b) for a, b in zip(start.state_dict().values(), source.state_dict().values()))

    wider, _ = env
    tiny = {k: v for k, v in TINY.items() if k not in ("preset", "model_overrides")}
    summary = train(TrainConfig(data=str(wider), out_dir=str(tmp_path / "tuned"), steps=2, val_split=None,
                                init_from=str(tmp_path / "source"), lr=1e-3, **tiny))
    tuned = FaceEraseUNet.from_pretrained(summary["model_dir"])
    assert tuned.hub_config == source.hub_config  # the saved model's architecture, not the --preset default
    assert not (Path(summary["model_dir"]) / "inference.json").exists()  # calibrate the new weights again
    assert not all(torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), source.state_dict().values()))

    with pytest.raises(ValueError, match="init_from takes the architecture of the saved model"):
        TrainConfig(init_from=str(tmp_path / "source"), model_overrides={"depth": 3})
    with pytest.raises(SystemExit) as info:
        train_cli.main(["--data", str(wider), "--init-from", str(tmp_path / "nowhere"), "--steps", "1",
                        "--out", str(tmp_path / "out"), "--no-progress"])
    assert str(info.value).startswith("train.py: error: no model folder at") and "\n" not in str(info.value)
