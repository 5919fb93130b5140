"""FaceEraseUNet: shapes, presets, Hub-mixin save/load round trips (local folder and offline HF cache)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from faceerase.model.network import PRESETS, FaceEraseUNet


def small(**overrides) -> FaceEraseUNet:
    torch.manual_seed(0)
    return FaceEraseUNet(**{"base_channels": 4, "depth": 2, **overrides}).eval()


@pytest.mark.parametrize("stem_stride", [1, 2, 4])
@pytest.mark.parametrize("size", [(37, 53), (64, 64), (17, 200), (9, 9)])
def test_predict_proba_any_size(stem_stride, size):
    model = small(stem_stride=stem_stride)
    prob = model.predict_proba(torch.rand(2, 3, *size))
    assert prob.shape == (2, *size)
    assert prob.dtype == torch.float32
    assert 0 <= prob.min() and prob.max() <= 1


def test_forward_gives_logits_of_input_size():
    model = small(stem_stride=4)
    logits = model(torch.rand(1, 3, 64, 96))
    assert logits.shape == (1, 1, 64, 96)


def test_grayscale_model_accepts_rgb_and_rgb_model_accepts_gray():
    gray, rgb = small(in_channels=1), small(in_channels=3)
    image = torch.rand(1, 3, 32, 32)
    luma = (image * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert torch.allclose(gray.predict_proba(image), gray.predict_proba(luma), atol=1e-6)
    assert rgb.predict_proba(luma).shape == (1, 32, 32)


def test_forward_rejects_wrong_shapes_clearly():
    model = small()
    with pytest.raises(ValueError, match=r"expected a \(B, 3, H, W\) tensor"):
        model(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match="expected a"):
        model.predict_proba(torch.rand(1, 4, 32, 32))


def test_invalid_config_rejected():
    with pytest.raises(ValueError, match="in_channels"):
        FaceEraseUNet(in_channels=2)
    with pytest.raises(ValueError, match="stem_stride"):
        FaceEraseUNet(stem_stride=3)
    with pytest.raises(ValueError, match="unknown preset"):
        FaceEraseUNet.from_preset("huge")
    with pytest.raises(ValueError, match=r"unknown encoder 'resnet'; choose one of \['mobilenet_v2', 'plain'\]"):
        FaceEraseUNet(encoder="resnet")
    with pytest.raises(ValueError, match="invalid parameters for encoder 'mobilenet_v2'"):
        FaceEraseUNet(encoder="mobilenet_v2", base_channels=8)


def test_seed_preset_is_the_2018_design():
    model = FaceEraseUNet.from_preset("seed")
    assert model.in_channels == 1 and model.encoder.strides == (1, 2, 4, 8, 16) and model.output_stride == 1
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(convs) == 18  # 2 per level: 5 encoder levels + 4 decoder levels
    assert len(norms) == len(convs) + 1  # after every 3x3 conv, plus the input BatchNorm
    assert [c.out_channels for c in convs[:10:2]] == [64, 128, 256, 512, 1024]
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.modules()) == 1  # shared 2x2/2 pool
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in model.modules()) == 4


def test_presets_build():
    for name in PRESETS:
        overrides = {} if name == "mobilenet" else {"base_channels": 4}
        assert isinstance(FaceEraseUNet.from_preset(name, **overrides), FaceEraseUNet)


def test_save_pretrained_round_trip_is_identical(tmp_path):
    model = small(stem_stride=2, separable=True)
    model.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors"} <= {p.name for p in tmp_path.iterdir()}
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["stem_stride"] == 2 and config["separable"] is True
    loaded = FaceEraseUNet.from_pretrained(tmp_path).eval()
    image = torch.rand(1, 3, 40, 56)
    assert torch.equal(model.predict_proba(image), loaded.predict_proba(image))


def test_from_pretrained_of_a_folder_prints_nothing(tmp_path, capsys):
    """huggingface_hub's loader prints "Loading weights from local directory"; FaceErase loads folders itself."""
    small(stem_stride=2).save_pretrained(tmp_path)
    FaceEraseUNet.from_pretrained(tmp_path)
    assert capsys.readouterr().out == ""


def _fake_hub_cache(cache: Path, repo_id: str, model_dir: Path) -> None:
    """Lay out a model folder as huggingface_hub's cache holds a downloaded repo."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in model_dir.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


@pytest.mark.slow
def test_from_pretrained_repo_id_offline_from_hf_cache(tmp_path):
    model = small(stem_stride=4)
    model.save_pretrained(tmp_path / "model")
    _fake_hub_cache(tmp_path / "cache", "faceerase/test-unet", tmp_path / "model")
    code = (
        "import torch; from faceerase.model.network import FaceEraseUNet\n"
        "m = FaceEraseUNet.from_pretrained('faceerase/test-unet').eval()\n"
        "torch.manual_seed(1); print(float(m.predict_proba(torch.rand(1, 3, 32, 32)).sum()))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    torch.manual_seed(1)
    expected = float(model.predict_proba(torch.rand(1, 3, 32, 32)).sum())
    assert float(out.stdout.strip().splitlines()[-1]) == pytest.approx(expected, rel=1e-6)
