"""Model card (README.md) for a trained FaceErase checkpoint folder."""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import ModelCardData

from faceerase.model.network import FaceEraseUNet
from faceerase.training.evaluation import COVERAGE_THRESHOLD, LARGE_FACE_SIDE

DATASETS = ["CUHK-CSE/wider_face"]

LICENSE_NOTE = (
    "The weights were trained on WIDER FACE (Yang, Luo, Loy, Tang, CVPR 2016), released under "
    "CC BY-NC-ND 4.0: **non-commercial use only**. The FaceErase code is Apache-2.0; these weights are not."
)

_METRIC_NOTES = {
    "val_iou": "pixel IoU of the thresholded mask (0.5) with the face boxes, ignore regions excluded",
    "val_dice": "pixel Dice of the same",
    "val_face_recall": f"share of valid faces whose box is at least {COVERAGE_THRESHOLD:.0%} covered by the mask",
    "val_face_recall_16px": f"the same for faces at least {LARGE_FACE_SIDE} px on their short side",
}


def _format(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def card_metadata() -> str:
    """The card's YAML front matter: licence, library, pipeline and tags as declared once, on
    :class:`~faceerase.model.network.FaceEraseUNet`'s Hub mixin, plus the training datasets."""
    data = FaceEraseUNet._hub_mixin_info.model_card_data.to_dict()
    return ModelCardData(**{**data, "datasets": DATASETS}).to_yaml()


def write_model_card(folder: str | Path, metrics: dict, train_config: dict, *, model_config: dict,
                     command: str | None = None, repo_id: str | None = None) -> Path:
    """Write ``folder/README.md`` describing the model, its measured ``metrics`` and how it was trained.

    Written before ``save_pretrained``, it is the folder's only card (the Hub mixin does not replace an existing
    README.md).

    Args:
        folder: the model folder.
        model_config: the model's ``config.json`` content (``FaceEraseUNet.hub_config``).
        metrics: measured validation metrics (e.g. ``val_iou``, ``val_face_recall``, ``step``).
        train_config: the training configuration as a JSON-serialisable dict.
        command: the command line that trained the model.
        repo_id: the Hub repository the card is for (used in the usage snippet).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = repo_id or "path/to/this/folder"
    rows = "\n".join(f"| `{key}` | {_format(value)} | {_METRIC_NOTES.get(key, '')} |"
                     for key, value in metrics.items() if key.startswith("val_"))
    state = ", ".join(f"{key} {_format(metrics[key])}" for key in ("step", "train_loss", "elapsed_s")
                      if metrics.get(key) is not None)
    resolution = train_config.get("input_size")
    text = f"""---
{card_metadata()}
---

# FaceErase U-Net

A fully convolutional U-Net that maps an image to per-pixel face probabilities; FaceErase thresholds them
into a mask and fills (or inpaints, blurs, pixelates) every face. Code: the `faceerase` Python package (Apache-2.0; its
public repository is to be published).

## Licence

{LICENSE_NOTE}

## Usage

```python
from faceerase import FaceEraseUNet

model = FaceEraseUNet.from_pretrained("{name}")
probabilities = model.predict_proba(images)  # float (B, 3, H, W) in [0, 1] -> (B, H, W)
```

## Architecture

```json
{json.dumps(model_config, indent=2, sort_keys=True)}
```

## Validation metrics (measured)

Measured during training on WIDER FACE validation images resized to a long side of {resolution} px (face boxes
as targets, invalid faces ignored); checkpoint state: {state or "n/a"}.

| metric | value | meaning |
|---|---|---|
{rows}

## Training

Trained on the WIDER FACE training split only, with random rescaling, 256 px crops, flips and colour jitter.

Command:

```
{command or "(not recorded)"}
```

Configuration:

```json
{json.dumps(train_config, indent=2, sort_keys=True, default=str)}
```

## Limitations

Targets are face bounding boxes (or ellipses), so masks are box-like and may miss tiny, heavily occluded
or atypically posed faces; check the output before publishing anonymized images.
"""
    path = folder / "README.md"
    path.write_text(text)
    return path
