"""Helpers of the app, CLI and video tests: a tiny model with a known output, media files, ``python app.py`` in a
subprocess.

Plain functions and classes, no fixtures: test modules and ``conftest.py`` (which holds the fixtures built on
them) import what they use (``from fixtures_app import ...``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import torch

from faceerase.model.network import FaceEraseUNet

REPO = Path(__file__).resolve().parents[1]
LOW_LOGIT = -5.0  # sigmoid(-5) ~ 0.0067: far below the auto threshold's floor


def make_low_model() -> FaceEraseUNet:
    """A tiny untrained U-Net whose probabilities stay near 0.0067 but still vary a little with the image.

    The head's bias is -5 and its weights are scaled down so the logits stay within about +-0.1 of it:
    ``auto`` then masks nothing while ``seed`` (relative to min and max) always masks something.
    """
    torch.manual_seed(0)
    model = FaceEraseUNet.from_preset("live", base_channels=4, depth=2).eval()
    with torch.no_grad():
        model.head.weight.mul_(0.01 / model.head.weight.abs().max())
        model.head.bias.fill_(LOW_LOGIT)
    return model


def write_video(path: Path, frames: int = 10, size: tuple[int, int] = (96, 64), fps: float = 12.0) -> None:
    """A short mp4v clip of a bright square moving over a dark background."""
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened()
    for i in range(frames):
        frame = np.full((height, width, 3), 30, np.uint8)
        x = 4 + i * (width - 28) // max(frames - 1, 1)
        frame[20:44, x:x + 24] = (240, 230, 220)
        writer.write(frame)
    writer.release()


def write_image(path: Path, size: tuple[int, int] = (80, 60), value: int | None = None) -> None:
    """A small RGB image: uniform grey when ``value`` is given, else a gradient with a bright disc."""
    width, height = size
    if value is not None:
        image = np.full((height, width, 3), value, np.uint8)
    else:
        yy, xx = np.mgrid[:height, :width]
        image = np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 90)], -1).astype(np.uint8)
        cv2.circle(image, (width // 2, height // 2), min(width, height) // 4, (250, 220, 200), -1)
    cv2.imwrite(str(path), image[:, :, ::-1])


# --------------------------------------------------------------------------- app server

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AppServer:
    """``python app.py --model ... --port ...`` in a subprocess, with Gradio's temporary folder ``temp_dir``
    (``GRADIO_TEMP_DIR``) when given; ``app``: the script served (default: this checkout's ``app.py``)."""

    def __init__(self, model: str, log: Path, temp_dir: Path | None = None, app: Path = REPO / "app.py"):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = log
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_SERVER_NAME": "127.0.0.1",
               "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        env.pop("FACEERASE_MODEL", None)
        if temp_dir is not None:
            env["GRADIO_TEMP_DIR"] = str(temp_dir)
        self.process = subprocess.Popen(
            [sys.executable, str(app), "--model", model, "--port", str(self.port)],
            cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)

    def wait(self, timeout: float = 90.0) -> "AppServer":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "config", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"app.py did not answer within {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()

