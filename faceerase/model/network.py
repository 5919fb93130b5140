"""The FaceErase U-Net: encoder + U-Net decoder + segmentation head, loadable from the Hugging Face Hub.

The model is built from parts (:mod:`faceerase.model.encoders`, :mod:`faceerase.model.decoder`); ``config.json`` names
the encoder and its parameters, so :meth:`FaceEraseUNet.from_pretrained` rebuilds whichever architecture was saved.
Building from a config never needs pretrained weights: only :meth:`FaceEraseUNet.load_encoder_weights` (training from
ImageNet or CenterFace initialisation) does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from safetensors.torch import load_model as load_safetensors
from torch import nn

from faceerase.media.images import LUMA_WEIGHTS
from faceerase.model.decoder import UNetDecoder
from faceerase.model.encoders import Encoder, build_encoder, encoder_class
from faceerase.model.fingerprint import weights_sha256
from faceerase.model.loading import WEIGHTS_NAME, read_settings
from faceerase.model.settings import DEFAULT_SETTINGS, InferenceSettings, warn_defaults

DEFAULT_ENCODER = "plain"

# Named configurations. ``seed`` is the 2018 design; ``accurate``/``fast``/``live`` trade the resolution of the
# first level (``stem_stride``) for CPU speed; ``mobilenet`` is the ImageNet-pretrained MobileNetV2 U-Net.
PRESETS: dict[str, dict] = {
    "seed": dict(in_channels=1, base_channels=64, depth=4, stem_stride=1, bn_after_relu=True, input_norm=True),
    "accurate": dict(in_channels=3, base_channels=16, depth=4, stem_stride=1),
    "fast": dict(in_channels=3, base_channels=16, depth=4, stem_stride=2),
    "live": dict(in_channels=3, base_channels=16, depth=4, stem_stride=4),
    "mobilenet": dict(encoder="mobilenet_v2", decoder_channels=[96, 64, 32], decoder_upsample="nearest"),
}

# Parameter names of the flat (pre-encoder) layout, still used by models saved before the encoder/decoder split.
_LEGACY_PREFIXES = (("stem.", "encoder.stem."), ("down.", "encoder.down."), ("up_blocks.", "decoder.blocks.{}.conv."),
                    ("up.", "decoder.blocks.{}.up."))


class FaceEraseUNet(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="faceerase",
    pipeline_tag="image-segmentation",
    license="cc-by-nc-nd-4.0",
    tags=["face-anonymization", "face-segmentation", "unet", "privacy", "gdpr"],
):
    """U-Net that maps an image to per-pixel face logits of the same size.

    Args:
        encoder: a name in :data:`faceerase.model.encoders.ENCODERS` (``plain`` or ``mobilenet_v2``); the encoder
            declares its input channels and normalization.
        decoder_channels: output channels of each decoder block, deep to shallow; None mirrors a ``plain``
            encoder's widths down to its first level (the original U-Net).
        decoder_upsample: ``transpose`` (learned, the original U-Net) or ``nearest``.
        input_norm: a BatchNorm on the raw input (2018) instead of the encoder's fixed normalization (its
            ``mean`` and ``std``: ImageNet's for ``mobilenet_v2``, (x - 0.5) / 0.25 for ``plain``).
        **encoder_params: the encoder's parameters; for ``plain``: ``in_channels`` (1 or 3), ``base_channels``,
            ``depth``, ``stem_stride`` (1, 2 or 4), ``separable``, ``bn_after_relu`` (the last two also shape
            the decoder blocks); for ``mobilenet_v2``: ``activation`` (``relu6``, torchvision's and the default,
            or ``relu``, CenterFace's; ``config.json`` records it only when given).

    ``forward`` takes float images in [0, 1] of shape (B, in_channels, H, W) where H and W are multiples of
    :attr:`size_divisor`; :meth:`predict_proba` accepts any size and returns probabilities. The logits are
    upsampled bilinearly from the decoder's output stride to the input size.

    :attr:`inference_settings` (input size, threshold range, mask growth) travel with the weights:
    ``save_pretrained`` writes them to ``inference.json`` and ``from_pretrained`` reads them back.
    """

    #: How this model is best run; None until trained and calibrated (see :mod:`faceerase.model.settings`).
    inference_settings: InferenceSettings | None = None
    #: The folder or Hub repo id (and revision) ``from_pretrained`` loaded this model from; None otherwise.
    name_or_path: str | None = None
    revision: str | None = None

    def __init__(self, encoder: str = DEFAULT_ENCODER, decoder_channels: Sequence[int] | None = None,
                 decoder_upsample: str = "transpose", input_norm: bool = False, **encoder_params):
        super().__init__()
        try:
            self.encoder: Encoder = build_encoder(encoder, **encoder_params)
        except TypeError as e:
            raise ValueError(f"invalid parameters for encoder {encoder!r}: {e}") from None
        in_channels = self.encoder.in_channels
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        self.in_channels = in_channels
        if decoder_channels is None:
            decoder_channels = list(reversed(self.encoder.channels[:-1]))
        block_style = {k: encoder_params[k] for k in ("separable", "bn_after_relu") if k in encoder_params}
        self.decoder = UNetDecoder(self.encoder.channels, self.encoder.strides, decoder_channels,
                                   decoder_upsample, **block_style)
        self.head = nn.Conv2d(self.decoder.out_channels, 1, 1)
        self.input_bn = nn.BatchNorm2d(in_channels) if input_norm else None
        self.register_buffer("input_mean", torch.tensor(self.encoder.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(self.encoder.std).view(1, -1, 1, 1), persistent=False)
        self.register_load_state_dict_pre_hook(_rename_legacy_keys)

    @property
    def hub_config(self) -> dict:
        """The constructor arguments that ``save_pretrained`` writes as ``config.json``."""
        return dict(self._hub_mixin_config or {})

    @property
    def settings(self) -> InferenceSettings:
        """:attr:`inference_settings`, or :data:`~faceerase.model.settings.DEFAULT_SETTINGS` for a model without
        them."""
        return self.inference_settings or DEFAULT_SETTINGS

    def _save_pretrained(self, save_directory: Path) -> None:
        super()._save_pretrained(save_directory)
        if self.inference_settings is not None:
            self.inference_settings.save(save_directory)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir: str | Path | None,
                         force_download: bool, local_files_only: bool, token: str | bool | None, **kwargs):
        if Path(model_id).is_dir():  # not the mixin's loader, which prints "Loading weights from local directory"
            map_location, strict = kwargs.pop("map_location", "cpu"), kwargs.pop("strict", False)
            model = cls(**kwargs)
            load_safetensors(model, str(Path(model_id) / WEIGHTS_NAME), strict=strict, device=map_location)
            model.eval()
        else:
            model = super()._from_pretrained(model_id=model_id, revision=revision, cache_dir=cache_dir,
                                             force_download=force_download, local_files_only=local_files_only,
                                             token=token, **kwargs)
        model.name_or_path, model.revision = str(model_id), revision
        model.inference_settings = read_settings(model_id, revision, "local_files_only" if local_files_only else None,
                                                 cache_dir=cache_dir, force_download=force_download, token=token)
        if model.inference_settings is None:
            warn_defaults(str(model_id))
        return model

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "FaceEraseUNet":
        """Build a fresh (untrained, not ImageNet-initialised) model from a named preset in :data:`PRESETS`."""
        return cls(**preset_config(name, **overrides))

    @property
    def size_divisor(self) -> int:
        """Input height and width must be multiples of this for :meth:`forward`."""
        return self.encoder.strides[-1]

    @property
    def output_stride(self) -> int:
        """Stride of the decoder's output before the logits are upsampled to the input size."""
        return self.decoder.output_stride

    def weights_sha256(self) -> str:
        """Fingerprint of the weights (:func:`faceerase.model.fingerprint.weights_sha256` of the state dict)."""
        return weights_sha256({name: t.detach().cpu().numpy() for name, t in self.state_dict().items()})

    def load_encoder_weights(self, weights: str | Path | None = None) -> None:
        """Initialise the encoder from pretrained weights it declares (:attr:`Encoder.pretrained
        <faceerase.model.encoders.Encoder.pretrained>`): its default ones (None), those named ``weights`` (from the
        installed file) or the file ``weights``; see :meth:`Encoder.load_pretrained
        <faceerase.model.encoders.Encoder.load_pretrained>`.

        Raises:
            ValueError: the encoder has no such weights or was built without the parameters they need, the weights
                need the fixed input normalization (``input_norm=False``), or the file is not theirs.
            ModuleNotFoundError: the named weights are not installed (the message names the pip command).
        """
        declared = self.encoder.pretrained_weights(weights)
        if declared.fixed_normalization and self.input_bn is not None:
            raise ValueError(f"the {declared.name} weights need the fixed input normalization (input_norm=False)")
        self.encoder.load_pretrained(weights)

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
        x = self.input_bn(x) if self.input_bn is not None else (x - self.input_mean) / self.input_std
        logits = self.head(self.decoder(self.encoder(x)))
        if logits.shape[-2:] != (h, w):
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        return logits

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        """Face probabilities (B, H, W), on the device of ``images``, for float images (B, 1 or 3, H, W) in
        [0, 1] of any size: :func:`faceerase.model.runners.predict_proba` with this model's
        :class:`~faceerase.model.runners.TorchRunner` (the images are prepared on the CPU, as for every runner)."""
        from faceerase.model.runners import TorchRunner, predict_proba

        probabilities = predict_proba(TorchRunner(self), images.detach().float().cpu().numpy())
        return torch.from_numpy(probabilities).to(images.device)


def preset_config(name: str, **overrides) -> dict:
    """The constructor arguments of the preset ``name`` in :data:`PRESETS` with ``overrides``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return {**PRESETS[name], **overrides}


def preset_encoder(name: str, **overrides) -> type[Encoder]:
    """The encoder class of :func:`preset_config`, without building the model (for its declarations)."""
    return encoder_class(preset_config(name, **overrides).get("encoder", DEFAULT_ENCODER))


def to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> (B, 1, H, W) luma."""
    weights = images.new_tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)


def _rename_legacy_keys(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Map the flat layout (``stem``, ``down``, ``up``, ``up_blocks``) saved before the encoder/decoder split."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix):]
        for old, new in _LEGACY_PREFIXES:
            if rest.startswith(old):
                tail = rest[len(old):]
                if "{}" in new:
                    index, tail = tail.split(".", 1)
                    new = new.format(index)
                state_dict[prefix + new + tail] = state_dict.pop(key)
                break
