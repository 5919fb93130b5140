"""The FaceErase U-Net: a fully convolutional face segmenter that loads from the Hugging Face Hub."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

REPO_URL = "https://github.com/faceerase/faceerase"

# Named configurations. ``seed`` is the 2018 design; the others trade resolution of the first
# level (``stem_stride``) and width for CPU speed while keeping the encoder-decoder with skips.
PRESETS: dict[str, dict] = {
    "seed": dict(in_channels=1, base_channels=64, depth=4, stem_stride=1, separable=False,
                 bn_after_relu=True, input_norm=True),
    "accurate": dict(in_channels=3, base_channels=16, depth=4, stem_stride=1),
    "fast": dict(in_channels=3, base_channels=16, depth=4, stem_stride=2),
    "live": dict(in_channels=3, base_channels=16, depth=4, stem_stride=4),
}


class ConvBlock(nn.Sequential):
    """Two 3x3 same-padded convolutions, each with batch norm and ReLU.

    ``bn_after_relu`` reproduces the 2018 ordering (conv, ReLU, BN); ``separable`` makes the
    second convolution depthwise-separable.
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


class FaceEraseUNet(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="faceerase",
    repo_url=REPO_URL,
    pipeline_tag="image-segmentation",
    license="cc-by-nc-nd-4.0",
    tags=["face-anonymization", "face-segmentation", "unet", "privacy", "gdpr"],
):
    """U-Net that maps an image to per-pixel face logits of the same size.

    Args:
        in_channels: 1 (grayscale, as in 2018) or 3 (RGB).
        base_channels: channels of the first level; doubled at each of ``depth`` poolings.
        depth: number of 2x2 max-poolings (stride 2) between encoder levels.
        stem_stride: 1, 2 or 4. Above 1, a strided convolution replaces the first full-resolution
            level and the logits are upsampled bilinearly by this factor: much faster on CPU.
        separable: make the second convolution of each block depthwise-separable.
        bn_after_relu: 2018 ordering (conv, ReLU, BN) instead of (conv, BN, ReLU).
        input_norm: a BatchNorm on the raw input (2018) instead of a fixed affine normalization.

    ``forward`` takes float images in [0, 1] of shape (B, in_channels, H, W) where H and W are
    multiples of :attr:`size_divisor`; :meth:`predict_proba` accepts any size and returns
    probabilities.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 16,
        depth: int = 4,
        stem_stride: int = 1,
        separable: bool = False,
        bn_after_relu: bool = False,
        input_norm: bool = False,
    ):
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        if stem_stride not in (1, 2, 4):
            raise ValueError(f"stem_stride must be 1, 2 or 4, got {stem_stride}")
        if depth < 1 or base_channels < 1:
            raise ValueError("depth and base_channels must be positive")
        self.in_channels = in_channels
        self.depth = depth
        self.stem_stride = stem_stride
        self.input_bn = nn.BatchNorm2d(in_channels) if input_norm else None
        block = lambda cin, cout: ConvBlock(cin, cout, separable, bn_after_relu)  # noqa: E731
        widths = [base_channels * 2**i for i in range(depth + 1)]
        if stem_stride == 1:
            self.stem: nn.Module = block(in_channels, widths[0])
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, widths[0], stem_stride + 1, stride=stem_stride,
                          padding=stem_stride // 2, bias=False),
                nn.BatchNorm2d(widths[0]),
                nn.ReLU(inplace=True),
                block(widths[0], widths[0]),
            )
        self.down = nn.ModuleList(block(widths[i], widths[i + 1]) for i in range(depth))
        self.pool = nn.MaxPool2d(2, 2)
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth)))
        self.up_blocks = nn.ModuleList(block(2 * widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], 1, 1)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "FaceEraseUNet":
        """Build a fresh (untrained) model from a named preset in :data:`PRESETS`."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @property
    def size_divisor(self) -> int:
        """Input height and width must be multiples of this for :meth:`forward`."""
        return self.stem_stride * 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Face logits (B, 1, H, W) for images (B, in_channels, H, W) in [0, 1]."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected a (B, {self.in_channels}, H, W) tensor, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % self.size_divisor or w % self.size_divisor:
            raise ValueError(
                f"height and width must be multiples of {self.size_divisor}, got {h}x{w}; "
                "use predict_proba for arbitrary sizes")
        x = self.input_bn(x) if self.input_bn is not None else (x - 0.5) / 0.25
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(self.pool(skips[-1])))
        y = skips.pop()
        for up, block in zip(self.up, self.up_blocks):
            y = block(torch.cat([up(y), skips.pop()], dim=1))
        logits = self.head(y)
        if self.stem_stride > 1:
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        return logits

    @torch.inference_mode()
    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        """Face probabilities (B, H, W) for float images (B, 1 or 3, H, W) in [0, 1] of any size.

        RGB input is converted for a grayscale model; the image is reflect-padded to a multiple
        of :attr:`size_divisor` and the output cropped back.
        """
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected a (B, 1 or 3, H, W) tensor, got shape {tuple(images.shape)}")
        if images.shape[1] == 3 and self.in_channels == 1:
            weights = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images * weights).sum(1, keepdim=True)
        elif images.shape[1] == 1 and self.in_channels == 3:
            images = images.expand(-1, 3, -1, -1)
        h, w = images.shape[-2:]
        d = self.size_divisor
        ph, pw = -h % d, -w % d
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            images = F.pad(images, (0, pw, 0, ph), mode=mode)
        logits = self(images)[:, 0, :h, :w]
        return torch.sigmoid(logits.float())
