"""Export the last state of a training run (``OUT/ckpt.pt``) as a Hub model folder.

``train.py`` keeps ``OUT/best`` (chosen on validation images); the shipped model is the final state instead,
so that no choice was made on the split it is evaluated on:

    python scripts/export_checkpoint.py runs/live-cpu/ckpt.pt hub
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from faceerase.training.loop import TrainConfig, build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="ckpt.pt written by train.py")
    parser.add_argument("out", help="folder for config.json + model.safetensors")
    args = parser.parse_args()
    if not Path(args.checkpoint).is_file():
        parser.error(f"no checkpoint at {args.checkpoint} (train.py writes OUT/ckpt.pt)")
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    model = build_model(TrainConfig.from_dict({**ckpt["config"], "pretrained": False}))  # weights come from ckpt
    model.load_state_dict(ckpt["model"])
    model.eval().save_pretrained(args.out)
    print(f"step {ckpt['step']} ({ckpt['elapsed']:.0f} s of training) -> {args.out}")


if __name__ == "__main__":
    main()
