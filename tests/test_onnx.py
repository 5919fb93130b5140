"""ONNX export and the onnxruntime backend: same probabilities as PyTorch on real photos, clear export errors."""

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from faceerase.erase.pipeline import ONNX_NAME, FaceEraser
from faceerase.media.images import load_image
from faceerase.model.network import FaceEraseUNet
from faceerase.model.onnx_model import OnnxExportError, OnnxFaceModel, export_onnx
from faceerase.model.settings import InferenceSettings
from test_encoders import EXAMPLES

TOLERANCE = 1e-5  # max abs difference of probabilities, onnxruntime vs PyTorch (fp32)


def photos(size: int) -> list[np.ndarray]:
    import cv2

    out = []
    for path in sorted(EXAMPLES.glob("*.jpg")):
        image = load_image(path)
        scale = size / max(image.shape[:2])
        out.append(cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale))))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("preset, overrides", [("mobilenet", {}), ("live", {"base_channels": 4, "depth": 2}),
                                               ("seed", {"base_channels": 4, "depth": 2})])
def test_onnxruntime_matches_pytorch_on_real_photos(preset, overrides, tmp_path):
    torch.manual_seed(0)
    model = FaceEraseUNet.from_preset(preset, **overrides).eval()
    model.inference_settings = InferenceSettings(input_size=640, dilation=3, source="test")
    path = tmp_path / "m.onnx"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_onnx(model, path)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # export changes nothing
    runner = OnnxFaceModel(path)
    assert runner.size_divisor == model.size_divisor and runner.in_channels == model.in_channels
    assert runner.inference_settings == model.inference_settings
    for image in photos(150):  # sides that are not multiples of the divisor: padding must agree too
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
        expected = model.predict_proba(x).numpy()
        got = runner.predict_proba(x.numpy())
        assert got.shape == expected.shape == (1, *image.shape[:2])
        assert np.abs(got - expected).max() < TOLERANCE


def test_unsupported_operation_is_a_clear_error():
    model = FaceEraseUNet.from_preset("live", base_channels=4, depth=2).eval()
    model.head.register_forward_hook(lambda module, inputs, out: out + torch.special.erfcx(out))
    with pytest.raises(OnnxExportError, match=r"cannot export .* opset 17: .*special_erfcx.* not supported") as info:
        export_onnx(model)
    assert "\n" not in str(info.value)


def test_eraser_onnx_backend_matches_torch(tiny_model):
    images = photos(200)
    torch_maps = FaceEraser(tiny_model, device="cpu", input_size=128).predict(images)
    onnx_maps = FaceEraser(tiny_model, device="cpu", input_size=128, backend="onnx").predict(images)
    for a, b in zip(torch_maps, onnx_maps):
        assert np.abs(a - b).max() < TOLERANCE
    with pytest.raises(ValueError, match="unknown backend"):
        FaceEraser(tiny_model, backend="tensorrt")


@pytest.mark.slow
def test_eraser_uses_the_folders_onnx_file_only_when_it_matches_the_weights(tiny_model, tmp_path, monkeypatch):
    from faceerase.model import onnx_model

    folder = tmp_path / "model"
    tiny_model.save_pretrained(folder)
    export_onnx(tiny_model, folder / ONNX_NAME)
    image = photos(64)[0]
    expected = FaceEraser(tiny_model, device="cpu", input_size=64, backend="torch").predict([image])[0]

    def no_export(*args, **kwargs):
        raise AssertionError("the folder's model.onnx should have been used")

    with monkeypatch.context() as m:
        m.setattr(onnx_model, "export_onnx", no_export)
        from_file = FaceEraser(folder, device="cpu", input_size=64, backend="onnx").predict([image])[0]
    assert np.abs(from_file - expected).max() < TOLERANCE
    torch.manual_seed(5)
    export_onnx(FaceEraseUNet.from_preset("live", base_channels=4, depth=2).eval(), folder / ONNX_NAME)  # stale
    with pytest.warns(UserWarning, match="was not exported from these weights"):
        refreshed = FaceEraser(folder, device="cpu", input_size=64, backend="onnx").predict([image])[0]
    assert np.abs(refreshed - expected).max() < TOLERANCE


def test_auto_backend_is_onnxruntime_on_cpu_whose_idle_threads_sleep(tiny_model):
    eraser = FaceEraser(tiny_model, device="cpu")
    assert eraser.backend == "onnx"
    options = eraser.runner.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"  # no cores burnt between runs
    assert FaceEraser(tiny_model, device="cpu", backend="torch").backend == "torch"


@pytest.mark.slow
def test_cli_export_onnx_and_backend_option(tiny_model_dir, tmp_path, capsys):
    import json

    from faceerase.cli import main

    out = tmp_path / "exported.onnx"
    assert main(["export-onnx", str(tiny_model_dir), "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert OnnxFaceModel(out).size_divisor == 16
    assert main(["export-onnx", str(tiny_model_dir), "-o", str(tmp_path / "model.bin")]) == 2
    assert "must be a .onnx file" in capsys.readouterr().err
    image = tmp_path / "photo.png"
    import cv2

    cv2.imwrite(str(image), photos(80)[0][:, :, ::-1])
    for backend in ("torch", "onnx"):
        report = tmp_path / f"{backend}.jsonl"
        code = main(["anonymize", str(image), "-o", str(tmp_path / f"{backend}.png"), "--model", str(tiny_model_dir),
                     "--backend", backend, "--device", "cpu", "--report", str(report)])
        assert code == 0
        assert json.loads(report.read_text().splitlines()[0])["model"]["backend"] == backend


@pytest.mark.slow
def test_onnx_backend_on_a_folders_model_onnx_never_imports_torch(tiny_model, tmp_path):
    """A deployment without torch: the folder's up-to-date model.onnx is all the onnx backend needs."""
    import json
    import subprocess
    import sys

    import cv2

    folder = tmp_path / "model"
    tiny_model.save_pretrained(folder)
    export_onnx(tiny_model, folder / ONNX_NAME)
    image = tmp_path / "photo.png"
    cv2.imwrite(str(image), photos(96)[0][:, :, ::-1])
    script = (
        "import json, sys\n"
        "sys.modules['torch'] = None  # any `import torch` now raises ImportError\n"
        "import numpy as np\n"
        "from faceerase import FaceEraser\n"
        f"eraser = FaceEraser({str(folder)!r}, input_size=64, backend='onnx')\n"
        f"np.save({str(tmp_path / 'prob.npy')!r}, eraser({str(image)!r}).probabilities)\n"
        "print(json.dumps({'model': type(eraser.model).__name__, 'device': eraser.device,\n"
        "                  'hash': eraser.model.weights_sha256(), 'input_size': eraser.input_size}))\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report == {"model": "OnnxFaceModel", "device": None, "hash": tiny_model.weights_sha256(),
                      "input_size": 64}
    expected = FaceEraser(tiny_model, device="cpu", input_size=64, backend="torch")(image).probabilities
    assert np.abs(np.load(tmp_path / "prob.npy") - expected).max() < TOLERANCE


@pytest.mark.slow
def test_load_onnx_model_says_when_the_file_is_missing_stale_or_unreadable(tiny_model, tmp_path):
    from faceerase.model.loading import ModelLoadError, OnnxUnavailableError, load_onnx_model
    from faceerase.model.settings import SETTINGS_NAME

    folder = tmp_path / "model"
    tiny_model.save_pretrained(folder)
    with pytest.raises(OnnxUnavailableError, match="has no model.onnx .*faceerase export-onnx") as missing:
        load_onnx_model(folder)
    assert not missing.value.stale
    export_onnx(tiny_model, folder / ONNX_NAME)
    settings = InferenceSettings(input_size=320, dilation=2, source="beside")
    settings.save(folder)
    assert (folder / SETTINGS_NAME).is_file()
    runner = load_onnx_model(folder)
    assert runner.settings == settings  # inference.json beside the file wins, as for load_model
    assert runner.name_or_path == str(folder) and runner.weights_sha256() == tiny_model.weights_sha256()
    torch.manual_seed(5)
    export_onnx(FaceEraseUNet.from_preset("live", base_channels=4, depth=2).eval(), folder / ONNX_NAME)
    with pytest.raises(OnnxUnavailableError, match="not exported from these weights") as stale:
        load_onnx_model(folder)
    assert stale.value.stale
    (folder / ONNX_NAME).write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="not a readable FaceErase ONNX model"):
        load_onnx_model(folder)
    with pytest.raises(ModelLoadError, match="no model folder"):
        load_onnx_model(tmp_path / "nowhere")


def edited_onnx(path, edit) -> None:
    """Rewrite the ONNX file ``path`` with ``edit(proto)`` applied, its other content and its metadata (the
    fingerprints the export wrote) kept as they are."""
    proto = onnx.load(str(path))
    edit(proto)
    onnx.save(proto, str(path))


def set_head_bias(proto) -> None:
    """The network's last bias to -60: every probability ~0, no face erased."""
    [bias] = [tensor for tensor in proto.graph.initializer if tensor.name == "net.head.bias"]
    bias.CopyFrom(numpy_helper.from_array(np.full(tuple(bias.dims), -60, np.float32), bias.name))


def set_normalization_constant(proto) -> None:
    """The first constant of three values in the graph (the input normalization's mean) multiplied by 100."""
    node = next(node for node in proto.graph.node if node.op_type == "Constant"
                and numpy_helper.to_array(node.attribute[0].t).size == 3)
    node.attribute[0].t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(node.attribute[0].t) * 100))


@pytest.mark.parametrize("edit", [set_head_bias, set_normalization_constant])
@pytest.mark.parametrize("beside_weights", [True, False])
def test_an_onnx_file_whose_weights_were_edited_never_loads(tiny_model, tmp_path, capsys, edit, beside_weights):
    import cv2

    from faceerase.cli import main
    from faceerase.model.loading import ModelLoadError, OnnxUnavailableError, load_onnx_model

    folder = tmp_path / "model"
    tiny_model.save_pretrained(folder)
    if not beside_weights:
        (folder / "model.safetensors").unlink()  # a torch-free deployment: config.json and model.onnx
    export_onnx(tiny_model, folder / ONNX_NAME)
    assert load_onnx_model(folder).weights_sha256() == tiny_model.weights_sha256()
    edited_onnx(folder / ONNX_NAME, edit)
    message = f"{folder / ONNX_NAME} was edited after export: its weights do not match the fingerprint"
    with pytest.raises(ModelLoadError, match=message) as error:
        load_onnx_model(folder)
    assert not isinstance(error.value, OnnxUnavailableError) and "\n" not in str(error.value)
    with pytest.raises(ModelLoadError, match="was edited after export"):
        OnnxFaceModel(folder / ONNX_NAME)
    cv2.imwrite(str(tmp_path / "photo.png"), photos(96)[0][:, :, ::-1])
    assert main(["anonymize", str(tmp_path / "photo.png"), "-o", str(tmp_path / "out"), "--model", str(folder),
                 "--backend", "onnx", "--input-size", "64"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"faceerase: error: cannot load the model: {message}") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_an_onnx_file_without_the_fingerprint_of_its_graph_is_not_used(tiny_model, tmp_path):
    from faceerase.model.loading import OnnxUnavailableError, load_onnx_model
    from faceerase.model.onnx_model import GRAPH_FINGERPRINT

    def drop_graph_fingerprint(proto) -> None:
        kept = [entry for entry in proto.metadata_props if entry.key != GRAPH_FINGERPRINT]
        del proto.metadata_props[:]
        proto.metadata_props.extend(kept)

    folder = tmp_path / "model"
    tiny_model.save_pretrained(folder)
    export_onnx(tiny_model, folder / ONNX_NAME)
    edited_onnx(folder / ONNX_NAME, lambda proto: (set_head_bias(proto), drop_graph_fingerprint(proto)))
    with pytest.raises(OnnxUnavailableError, match="carries no fingerprint of its own weights") as error:
        load_onnx_model(folder)
    assert error.value.stale
    image = photos(96)[0]
    with pytest.warns(UserWarning, match="carries no fingerprint"):  # the weights beside it are exported instead
        from_file = FaceEraser(folder, input_size=64, backend="onnx").predict([image])[0]
    expected = FaceEraser(tiny_model, device="cpu", input_size=64, backend="torch").predict([image])[0]
    assert np.abs(from_file - expected).max() < TOLERANCE


def test_an_onnx_model_object_runs_on_the_onnx_backend_only(tiny_model, tmp_path):
    runner = OnnxFaceModel(export_onnx(tiny_model))
    eraser = FaceEraser(runner, input_size=64)
    assert eraser.backend == "onnx" and eraser.model is runner and eraser.device is None
    with pytest.raises(ValueError, match="only on the onnx backend"):
        FaceEraser(runner, backend="torch")
    with pytest.raises(ValueError, match="onnx backend runs on the CPU"):
        FaceEraser(tiny_model, backend="onnx", device="cuda")


@pytest.mark.slow
def test_cli_on_the_onnx_backend_never_imports_torch(tiny_model, tmp_path):
    import json
    import subprocess
    import sys

    import cv2

    folder = tmp_path / "model"
    tiny_model.save_pretrained(folder)
    export_onnx(tiny_model, folder / ONNX_NAME)
    cv2.imwrite(str(tmp_path / "photo.png"), photos(96)[0][:, :, ::-1])
    script = ("import sys\nsys.modules['torch'] = None\nfrom faceerase.cli import main\n"
              f"raise SystemExit(main(['anonymize', {str(tmp_path / 'photo.png')!r}, '-o', {str(tmp_path / 'out')!r},"
              f" '--model', {str(folder)!r}, '--backend', 'onnx', '--input-size', '64',"
              f" '--report', {str(tmp_path / 'report.jsonl')!r}]))\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "1 anonymized, 0 failed" in run.stdout and (tmp_path / "out" / "photo.png").is_file()
    record = json.loads((tmp_path / "report.jsonl").read_text())
    assert record["model"] == {"id": str(folder), "revision": None, "weights_sha256": tiny_model.weights_sha256(),
                               "backend": "onnx"}
