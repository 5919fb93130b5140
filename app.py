"""FaceErase web demo (Gradio): erase every face in a photo or in live webcam frames.

A thin layer over the :mod:`faceerase` library. :func:`build_demo` builds the page for one model, loaded once
from ``--model`` or the ``FACEERASE_MODEL`` environment variable (folder or Hub repo id), else from the embedded
``hub/`` folder; if it does not load, the page still opens and says why. Uploads over ``--max-pixels`` (default:
``FACEERASE_MAX_PIXELS``, else 40 megapixels) are refused with a message.
``python app.py [--model M] [--port P] [--max-pixels N]`` serves it (the Hugging Face Space runs this file).
Importing the module loads no model and claims no folder; its ``demo`` (the page from the environment variables,
for tools that import this file) is built on first use.

Gradio's files (uploads, outputs) live in a folder of this server's own inside Gradio's temporary folder; it
is deleted when the server stops (Ctrl-C or SIGTERM), and by the next server if this one was killed.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import fields, replace
from pathlib import Path
from types import FrameType
from typing import Any

import cv2
import gradio as gr
import numpy as np
from gradio.utils import get_upload_folder
from PIL import Image

from faceerase.erase.fill import METHODS
from faceerase.erase.masks import MASK_SHAPES
from faceerase.erase.pipeline import FaceEraser, ModelLoadError, load_model
from faceerase.erase.thresholds import THRESHOLD_MODES
from faceerase.media.images import InvalidImageError, default_max_pixels, load_image, write_image
from faceerase.media.video import TemporalMax, anonymize_frames
from faceerase.model.network import FaceEraseUNet
from faceerase.model.settings import DEFAULT_SETTINGS, EraseSettings, format_setting, parse_setting, setting_kind

EXAMPLES_DIR = Path(__file__).resolve().parent / "faceerase" / "examples"
MODE_WORDS = {
    "auto": "finds the cut-off between faces and background in each photo, kept within this model's range "
            "{floor:g}-{ceiling:g}, so a photo without faces stays as it is (recommended)",
    "seed": "always covers the most face-like part of the photo, even in a photo without faces (the rule of the "
            "original 2018 version)",
    "fixed": "you set the cut-off with the slider: lower covers more, higher covers less"}
"""Each threshold mode in plain words, shown next to the control (``{floor}`` and ``{ceiling}``: the auto range)."""
METHOD_WORDS = {
    "fill": ("Fill (from the border)", "paints each face over with the colours around it, then softens it"),
    "inpaint_telea": ("Inpaint (Telea)", "rebuilds each face from the pixels around it, quickly"),
    "inpaint_ns": ("Inpaint (Navier-Stokes)", "rebuilds each face from the pixels around it, more smoothly"),
    "blur": ("Blur", "blurs each face; its strength is under More settings"),
    "mosaic": ("Mosaic", "turns each face into large squares; their number is under More settings"),
    "solid": ("Solid fill", "covers each face with one colour, set under More settings")}
"""Each method the page offers: its label and what it does in plain words, shown next to the control."""
NOT_IN_APP = {"replace_with"}
"""Settings the page does not offer: ``replace_with`` names a file on the server, which users must not read."""
PAGE_METHODS = tuple(m for m in METHODS if m != "image")
"""The methods the page offers: all but ``image``, whose picture is the ``replace_with`` file."""
DOWNLOAD_EXTENSIONS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp"}
"""The anonymized image's extension, hence its format, by the PIL format of the upload (a phone's JPEG with extra
images opens as MPO); any other upload gives a PNG."""
API_NAMES = {"mode": "threshold_mode", "fixed": "threshold_value", "shape": "mask_shape"}
"""The ``/erase`` endpoint's names of three settings (kept from before the settings had one type); every other
input of an endpoint is named as its setting."""
OWN_CONTROLS = {"threshold_mode", "threshold_value", "method", "dilation", "mask_shape", "input_size",
                "live_input_size", "temporal_window"}
"""The settings with controls of their own on the page (in the image tab, the first six; in the webcam tab, the
method and the last two)."""
MORE_CONTROLS = tuple(f.name for f in fields(EraseSettings) if f.name not in OWN_CONTROLS | NOT_IN_APP)
"""Every other setting: one control each, made from its field, under the image tab's "More settings"."""
CACHE_BYTES = 512 * 2**20  # probability maps kept for re-rendering, all sessions together
SERVER_FOLDER_PREFIX = "faceerase-server-"  # a server's own folder in Gradio's temporary folder
MASK_LABEL, MASK_COLOR = "face mask", "#ff2d55"
HIST_LEFT, HIST_RIGHT, THRESHOLD_RGB = 44, 10, (220, 30, 30)  # the histogram's margins (px), its threshold line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options of ``python app.py`` (``argv``: default ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description="Serve the FaceErase demo.")
    parser.add_argument("--model", help="model folder or Hub repo id (default: $FACEERASE_MODEL, else hub/)")
    parser.add_argument("--port", type=int, help="port (default: $GRADIO_SERVER_PORT, else 7860)")
    parser.add_argument("--max-pixels", type=int, metavar="N",
                        help="refuse uploads of more than N pixels (default: $FACEERASE_MAX_PIXELS, else 40000000)")
    args = parser.parse_args(argv)
    if args.max_pixels is not None and args.max_pixels < 1:
        parser.error(f"--max-pixels must be at least 1, got {args.max_pixels}")
    return args


def load(source: str | None) -> tuple[FaceEraseUNet | None, str | None]:
    """The model, or None and a message saying why it could not be loaded."""
    try:
        return load_model(source), None
    except ModelLoadError as error:
        return None, str(error)


# --------------------------------------------------------------------------- this server's files

def remove_stale_server_folders(base: Path) -> None:
    """Delete the folders of :func:`claim_server_folder` in ``base`` whose server has stopped.

    A running server holds a lock on its folder for as long as its process lives (the system releases it when
    the process ends, even when killed), so a folder nobody holds was left by a server that could not clean up.
    Nothing else in ``base`` is touched.
    """
    for folder in base.glob(SERVER_FOLDER_PREFIX + "*"):
        if folder.is_symlink() or not folder.is_dir():
            continue
        try:
            lock = os.open(folder, os.O_RDONLY)
        except OSError:  # another user's server, say
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # its server is running
        else:
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(lock)


def claim_server_folder(base: Path) -> tuple[Path, int]:
    """Remove stale server folders from ``base``, then create this server's folder there, locked until the
    process ends; returns the folder and the lock's file descriptor (keep it open)."""
    base.mkdir(parents=True, exist_ok=True)
    remove_stale_server_folders(base)
    # Created under another name and locked before it is renamed: no starting server ever sees it unlocked.
    unlocked = Path(tempfile.mkdtemp(prefix=".faceerase-new-", dir=base))
    lock = os.open(unlocked, os.O_RDONLY)
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    folder = unlocked.rename(base / (SERVER_FOLDER_PREFIX + unlocked.name.removeprefix(".faceerase-new-")))
    return folder, lock


def use_server_folder() -> Path:
    """Claim this server's folder (:func:`claim_server_folder`) in Gradio's temporary folder and make it Gradio's
    temporary folder from here on; returns it.

    Gradio keeps its files (uploads, examples, outputs) under ``GRADIO_TEMP_DIR``, read when used: call this before
    the page is built. The folder stays locked until the process ends (the lock's descriptor is never closed).
    """
    folder, _lock = claim_server_folder(Path(get_upload_folder()).resolve())
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (docker, systemd, Spaces) stops the server the way Ctrl-C does, then the process exits."""
    raise SystemExit(0)


# --------------------------------------------------------------------------- pictures for the page

def heat_map(prob: np.ndarray) -> np.ndarray:
    """Probability map as an RGB 'inferno' image (scaled to uint8 directly: no full-size float copy)."""
    return cv2.applyColorMap(cv2.convertScaleAbs(prob, alpha=255), cv2.COLORMAP_INFERNO)[:, :, ::-1]


def mask_layer(mask: np.ndarray) -> np.ndarray:
    """The face mask as an RGBA image: :data:`MASK_COLOR` where masked, transparent elsewhere."""
    layer = np.zeros((*mask.shape, 4), np.uint8)
    layer[mask] = (*(int(MASK_COLOR[i:i + 2], 16) for i in (1, 3, 5)), 255)
    return layer


def histogram(prob: np.ndarray, threshold: float, width: int = 480, height: int = 200) -> np.ndarray:
    """Histogram of probabilities (100 bins over [0, 1]) on a log count axis, ticked at each power of ten, with
    the threshold as a red line; bars are log(1 + count) high, so a bin of one pixel still shows."""
    counts, _ = np.histogram(prob, bins=100, range=(0.0, 1.0))
    canvas = np.full((height, width, 3), 255, np.uint8)
    left, top, bottom = HIST_LEFT, 40, height - 24
    plot_w = width - HIST_LEFT - HIST_RIGHT
    text = dict(fontFace=cv2.FONT_HERSHEY_SIMPLEX, fontScale=0.4, thickness=1, lineType=cv2.LINE_AA)
    cv2.putText(canvas, "pixels per probability (log scale)", (left, 16), color=(0, 0, 0), **text)
    decades = max(1, int(np.ceil(np.log10(max(counts.max(), 1)))))  # the axis reaches 10**decades
    scale = (bottom - top) / np.log10(1 + 10.0 ** decades)

    def y_of(count: float) -> int:
        return bottom - int(round(np.log10(1 + count) * scale))

    for power in range(decades + 1):
        y = y_of(10.0 ** power)
        cv2.line(canvas, (left, y), (left + plot_w, y), (225, 225, 225), 1)
        label = f"{10 ** power:,}" if power < 3 else f"1e{power}"
        cv2.putText(canvas, label, (2, y + 4), color=(90, 90, 90), **text)
    for i, count in enumerate(counts):
        if count:
            x0, x1 = left + i * plot_w // 100, left + (i + 1) * plot_w // 100 - 1
            cv2.rectangle(canvas, (x0, y_of(count)), (x1, bottom), (70, 110, 200), -1)
    cv2.line(canvas, (left, bottom), (left + plot_w, bottom), (0, 0, 0), 1)
    for label, x in (("0", left), ("0.5", left + plot_w // 2 - 10), ("1", left + plot_w - 8)):
        cv2.putText(canvas, label, (x, height - 6), color=(0, 0, 0), **text)
    tx = threshold_x(threshold, width)
    cv2.line(canvas, (tx, top - 8), (tx, bottom), THRESHOLD_RGB, 2)
    cv2.putText(canvas, f"threshold {threshold:.3f}", (min(tx + 4, width - 120), top - 8), color=THRESHOLD_RGB,
                **text)
    return canvas


def threshold_x(threshold: float, width: int = 480) -> int:
    """The column of the threshold's line in a :func:`histogram` ``width`` pixels wide."""
    return HIST_LEFT + int(np.clip(threshold, 0, 1) * (width - HIST_LEFT - HIST_RIGHT))


# --------------------------------------------------------------------------- output files

def output_folder() -> Path:
    """A new folder in Gradio's cache for the output files of one request.

    Returned as arrays, outputs would be saved by Gradio under a hash of their content, and rewritten in place
    by every request returning the same pixels, even while another request downloads them (a truncated
    download); gr.AnnotatedImage would also make a float64 RGBA copy of the mask (32 bytes a pixel). Files
    here have names no other request uses; Gradio serves them where they are and its ``delete_cache`` removes
    them.
    """
    cache = Path(get_upload_folder())
    cache.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="faceerase-", dir=cache))


def save_png(pixels: np.ndarray, folder: Path, name: str) -> str:
    """Write RGB or RGBA ``pixels`` as ``folder/name.png``; returns its path."""
    path = folder / f"{name}.png"
    # RGB reversed is a view, copied only when not contiguous (the heat map, a reversed BGR image, is not copied)
    bgr = pixels[:, :, ::-1] if pixels.shape[2] == 3 else cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA)
    if not cv2.imwrite(str(path), bgr):
        raise gr.Error(f"Could not write the {name} image on the server.")
    return str(path)


def download_name(upload: dict) -> str:
    """The anonymized image's file name for the readable ``upload`` (Gradio's file data):
    ``<upload stem>-anonymized`` (letters, digits, ``.``, ``-`` and ``_`` kept) and the extension of the upload's
    format in :data:`DOWNLOAD_EXTENSIONS`, else ``.png``."""
    with Image.open(upload["path"]) as image:
        extension = DOWNLOAD_EXTENSIONS.get(image.format, ".png")
    stem = re.sub(r"[^\w.-]+", "_", Path(upload.get("orig_name") or upload["path"]).stem).strip("._")[:100]
    return f"{stem or 'image'}-anonymized{extension}"


def save_download(pixels: np.ndarray, folder: Path, name: str) -> str:
    """Write RGB ``pixels`` as ``folder/name`` in the format of its extension, with no metadata at all (the
    library's encoder); returns its path."""
    path = folder / name
    try:
        write_image(pixels, path)
    except OSError:
        raise gr.Error("Could not write the anonymized image on the server.") from None
    return str(path)


def served(path: str) -> dict:
    """The payload of an image component showing the file ``path`` (for events that skip postprocessing); its
    download button saves the file under its own name."""
    return gr.FileData(path=path, orig_name=Path(path).name).model_dump()


def annotated(image: str, mask: str | None) -> dict:
    """The payload of the gr.AnnotatedImage showing the file ``image`` with the file ``mask`` (a
    :func:`mask_layer`; None when nothing is masked) as its annotation."""
    return {"image": served(image), "annotations": [] if mask is None else [
        {"image": served(mask), "label": MASK_LABEL}]}


# --------------------------------------------------------------------------- handlers

class ProbabilityCache:
    """Probability maps by (session, image pixels, network settings), least recently used dropped beyond a byte
    budget.

    One store for all sessions so that memory stays bounded however many users there are, but a map serves
    only the session that computed it: no one learns from the page whether another user sent the same image.
    """

    def __init__(self, max_bytes: int = CACHE_BYTES):
        self.max_bytes = max_bytes
        self._maps: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(session: str, image: np.ndarray, settings: EraseSettings) -> str:
        """The key of a C-contiguous ``image`` run with the network ``settings`` in ``session`` (hashed in place,
        not copied)."""
        return f"{session}-{hashlib.sha1(image).hexdigest()}-{image.shape}-{settings.group('network')}"

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            if key in self._maps:
                self._maps.move_to_end(key)
            return self._maps.get(key)

    def put(self, key: str, prob: np.ndarray) -> None:
        with self._lock:
            self._maps[key] = prob
            while sum(p.nbytes for p in self._maps.values()) > self.max_bytes and len(self._maps) > 1:
                self._maps.popitem(last=False)


class Handlers:
    """The page's event handlers and what they share: the model (or why it did not load), the page's settings (the
    model's ``inference.json`` resolved: the controls' defaults), the upload limit and the probability cache."""

    def __init__(self, model: FaceEraseUNet | None, error: str | None, max_pixels: int):
        self.model, self.error, self.max_pixels = model, error, max_pixels
        self.settings = EraseSettings().resolved(model.settings if model is not None else DEFAULT_SETTINGS)
        self.cache = ProbabilityCache()

    def eraser(self, settings: EraseSettings) -> FaceEraser:
        """A FaceEraser on the shared model with ``settings``; its runner comes from the cache of loaded models
        (:func:`faceerase.model.runners.load`: the first request exports the model once)."""
        if self.model is None:
            raise gr.Error(f"The model is not loaded: {self.error}")
        return FaceEraser(self.model, settings=settings)

    def settings_of(self, controls: dict[str, Any]) -> EraseSettings:
        """The page's settings with the values of ``controls`` (by setting, or by :data:`API_NAMES`); a gr.Error
        says why a value is invalid or a method is not one of :data:`PAGE_METHODS`."""
        controls = {API_NAMES.get(name, name): value for name, value in controls.items()}
        try:
            settings = replace(self.settings, **{name: control_value(name, value) for name, value in controls.items()})
        except (ValueError, TypeError) as error:
            raise gr.Error(f"Invalid setting: {error}") from None
        if settings.method not in PAGE_METHODS:
            raise gr.Error(f"Invalid setting: method {settings.method!r} is not offered here; choose one of "
                           f"{', '.join(PAGE_METHODS)}")
        return settings

    def read_upload(self, upload: dict) -> np.ndarray:
        """An uploaded image (Gradio's file data) as RGB, or a gr.Error naming it as the user knows it."""
        try:
            return load_image(upload["path"], max_pixels=self.max_pixels)
        except InvalidImageError as error:  # name the upload as the user knows it, not by its server path
            message = str(error).replace(upload["path"], upload.get("orig_name") or "the upload")
            raise gr.Error(f"Cannot read this file: {message}") from None

    def clear_unreadable(self, upload: dict | None) -> Any:
        """After a failed request of the image tab: empty the input when its upload cannot be read, so that it
        offers its upload area again (a broken image would leave it collapsed); else leave it as it is."""
        try:
            if upload:
                self.read_upload(upload)
        except gr.Error:
            return None
        return gr.skip()

    def erase_image(self, upload: dict | None, request: gr.Request, **controls: Any) -> tuple:
        """Image tab: network pass (skipped when this session has seen this image with these network settings),
        then post-processing; ``controls``: the values of the tab's controls, by setting.

        Takes and returns Gradio's payloads (the event neither preprocesses nor postprocesses), the images as files
        of :func:`output_folder`.
        """
        if not upload:
            return None, None, None, None, None, ""
        settings = self.settings_of(controls)
        image = self.read_upload(upload)
        eraser = self.eraser(settings)
        key = self.cache.key(request.session_hash, image, settings) if request.session_hash else None
        prob = self.cache.get(key) if key else None
        if prob is not None:
            network = "network skipped (cached probabilities)"
        else:
            start = time.perf_counter()
            prob = eraser.predict([image])[0]
            network = (f"network {1000 * (time.perf_counter() - start):.0f} ms at "
                       f"{settings.input_size or 'original'} px")
            if key:
                self.cache.put(key, prob)
        result = eraser.postprocess(image, prob)
        n, faces = len(result.regions), sum(r.faces for r in result.regions)
        summary = (f"**{n} region{'s' * (n != 1)} (about {faces} face{'s' * (faces != 1)})**, "
                   f"{100 * result.mask.mean():.1f}% of the image masked · "
                   f"threshold {result.threshold:.3f} ({settings.threshold_mode}) · {network}")
        folder = output_folder()
        mask = save_png(mask_layer(result.mask), folder, "mask") if result.mask.any() else None
        return (served(save_png(heat_map(prob), folder, "probability")),
                served(save_png(histogram(prob, result.threshold), folder, "histogram")),
                round(float(result.threshold), 4), annotated(save_png(image, folder, "image"), mask),
                served(save_download(result.anonymized, folder, download_name(upload))), summary)

    def erase_frame(self, upload: dict | None, **controls: Any) -> str | None:
        """API only (``/erase_frame``): one image (Gradio's file data) anonymized like a webcam frame (one network
        pass at the live input size) but without the temporal smoothing of a stream; ``controls``: the method and
        the live input size. Returns the file's path."""
        if not upload:
            return None
        frame = self.read_upload(upload)
        live = self.eraser(self.settings_of(controls).live())
        result = live.postprocess(frame, live.predict([frame])[0])
        return save_png(result.anonymized, output_folder(), "anonymized")

    def stream_frame(self, frame: np.ndarray | None, state: dict | None, **controls: Any) -> tuple:
        """Webcam tab: anonymize one streamed frame with temporal smoothing over the last frames; report frames per
        second. ``controls``: the values of the tab's controls, by setting."""
        if frame is None:
            return None, "", state
        settings = self.settings_of(controls).live()
        if state is None or state["smoother"].window != settings.temporal_window:
            state = {"smoother": TemporalMax(settings.temporal_window), "last": None, "fps": 0.0}
        start = time.perf_counter()
        result = next(anonymize_frames(self.eraser(settings), iter([frame]), state["smoother"], batch_size=1))
        now = time.perf_counter()
        if state["last"] is not None:
            rate = 1.0 / max(now - state["last"], 1e-6)
            state["fps"] = rate if state["fps"] == 0 else 0.8 * state["fps"] + 0.2 * rate
        state["last"] = now
        return (save_png(result.anonymized, output_folder(), "anonymized"),
                f"**{state['fps']:.1f} frames/s** · {1000 * (now - start):.0f} ms per frame "
                f"({settings.input_size} px network input)", state)


def control_value(name: str, value: Any) -> Any:
    """The setting ``name`` from the value of its control: a text for several numbers, a float for a whole
    number."""
    kind = setting_kind(name)
    if kind is tuple:
        return parse_setting(name, str(value))[name]
    if value is None:
        raise ValueError(f"{name} needs a value")
    return round(value) if kind is int else kind(value)


def settings_control(name: str, value: Any) -> gr.Component:
    """A control of the setting ``name`` showing ``value``, made from its field: label, help, choices, type."""
    meta = next(f for f in fields(EraseSettings) if f.name == name).metadata
    label, kind = name.replace("_", " ").capitalize(), setting_kind(name)
    if meta.get("choices"):
        return gr.Dropdown(list(meta["choices"]), value=value, label=label, info=meta["help"])
    if kind is bool:
        return gr.Checkbox(value, label=label, info=meta["help"])
    if kind in (tuple, str):
        return gr.Textbox(format_setting(value), label=label, info=meta["help"])
    return gr.Number(value, label=label, info=meta["help"], minimum=meta.get("minimum"),
                     precision=0 if kind is int else None)


def toggle_fixed(mode: str) -> dict:
    """Show the fixed-threshold slider only in fixed mode."""
    return gr.update(visible=mode == "fixed")


def toggle_threshold(upload: str | None) -> dict:
    """Show the threshold used only while there is an image (an empty gr.Number shows 0)."""
    return gr.update(visible=upload is not None)


# --------------------------------------------------------------------------- page

def build_demo(model: str | None = None, max_pixels: int | None = None) -> gr.Blocks:
    """The page on ``model`` (folder or Hub repo id; default: ``FACEERASE_MODEL``, else ``hub/``), refusing
    uploads of more than ``max_pixels`` (default: ``FACEERASE_MAX_PIXELS``, else 40 megapixels)."""
    handlers = Handlers(*load(model or os.environ.get("FACEERASE_MODEL") or None), max_pixels or default_max_pixels())
    settings = handlers.settings
    input_sizes = [(f"{s} px", s) for s in sorted({256, 320, 384, 512, 768, 1024, settings.input_size,
                                                   settings.live_input_size} - {0})] + [("original", 0)]
    methods = [(METHOD_WORDS[m][0], m) for m in PAGE_METHODS]
    methods_info = "; ".join(f"{label}: {words}" for label, words in (METHOD_WORDS[m] for m in PAGE_METHODS))
    modes_info = "; ".join(f"{m}: " + MODE_WORDS[m].format(floor=settings.threshold_floor,
                                                           ceiling=settings.threshold_ceiling)
                           for m in THRESHOLD_MODES)
    with gr.Blocks(title="FaceErase", delete_cache=(600, 1800)) as demo:
        gr.Markdown("# FaceErase\nA U-Net segments every face; the mask is thresholded and the faces are "
                    f"inpainted, blurred, pixelated or filled. Images of up to {handlers.max_pixels / 1e6:g} "
                    "megapixels; uploaded and generated files are deleted from the server within 40 minutes, and when "
                    "it stops.")
        if handlers.error:
            gr.Markdown(f"### ⚠️ The model could not be loaded\n{handlers.error}", elem_id="model-error")
        with gr.Tab("Image"):
            with gr.Row():
                with gr.Column(min_width=160):
                    source = gr.Image(label="Input (upload, paste or drop)", type="filepath",
                                      sources=["upload", "clipboard"], image_mode=None, elem_id="input-image")
                    examples = sorted(EXAMPLES_DIR.glob("*.jpg"))
                    if examples:
                        gr.Examples([[str(p)] for p in examples], inputs=[source], label="Examples")
                heat = gr.Image(label="Face probability", interactive=False)
                overlay = gr.AnnotatedImage(label="Mask", color_map={MASK_LABEL: MASK_COLOR})
                result = gr.Image(label="Anonymized", interactive=False, buttons=["download", "fullscreen"],
                                  elem_id="result-image")
            with gr.Row():
                with gr.Column(scale=2):
                    summary = gr.Markdown(elem_id="summary")
                    hist = gr.Image(label="Histogram of probabilities", show_label=False, interactive=False)
                    threshold_used = gr.Number(label="Threshold used", interactive=False, precision=4,
                                               visible=False, elem_id="threshold-used")
                with gr.Column(scale=3):
                    mode = gr.Radio(list(THRESHOLD_MODES), value=settings.threshold_mode, label="Threshold",
                                    info=modes_info, elem_id="threshold-mode")
                    fixed = gr.Slider(0.01, 0.99, value=0.5, step=0.01, label="Fixed threshold", visible=False)
                    method = gr.Dropdown(methods, value=settings.method, label="Anonymization", info=methods_info,
                                         elem_id="method")
                    dilation = gr.Slider(0, 50, value=settings.dilation, step=1, label="Mask dilation (px)",
                                         info=(f"each region also grows by {settings.dilation_ratio:g} of its size, "
                                               "whichever is more" if settings.dilation_ratio else None))
                    shape = gr.Radio(list(MASK_SHAPES), value=settings.mask_shape, label="Mask shape")
                    size = gr.Dropdown(input_sizes, value=settings.input_size, label="Model input size",
                                       info="long side seen by the network"
                                            + "".join(f", plus a pass at {x:g}x of it" for x in settings.extra_scales)
                                            + "; changing it re-runs the network")
                    with gr.Accordion("More settings", open=False):
                        more = [settings_control(name, getattr(settings, name)) for name in MORE_CONTROLS]
            mode.change(toggle_fixed, mode, fixed, queue=False, api_visibility="private")
            triggers = [source.change, mode.change, fixed.release, method.change, dilation.release, shape.change,
                        size.change]
            for control in more:
                triggers += [control.change] if isinstance(control, (gr.Checkbox, gr.Dropdown)) else [
                    control.submit, control.blur]
            erasing = gr.on(triggers, handlers.erase_image, inputs=[source],
                            inputs_kwargs={"mode": mode, "fixed": fixed, "method": method, "dilation": dilation,
                                           "shape": shape, "input_size": size, **dict(zip(MORE_CONTROLS, more))},
                            outputs=[heat, hist, threshold_used, overlay, result, summary],
                            api_name="erase", preprocess=False, postprocess=False, trigger_mode="always_last",
                            show_progress="minimal")
            erasing.success(toggle_threshold, source, threshold_used, queue=False, api_visibility="private")
            erasing.failure(handlers.clear_unreadable, source, source, preprocess=False, queue=False,
                            api_visibility="private")
        with gr.Tab("Webcam"):
            gr.Markdown("Live anonymization of your camera: one network pass a frame at the live input size, and "
                        "the maximum over a temporal window of frames, so that a face missed once does not flash.")
            with gr.Row():
                camera = gr.Image(label="Camera", sources=["webcam"], streaming=True, type="numpy")
                live = gr.Image(label="Anonymized", interactive=False)
            with gr.Row():
                live_method = gr.Dropdown(methods, value="blur", label="Anonymization", info=methods_info)
                live_size = gr.Dropdown(input_sizes, value=settings.live_input_size, label="Live input size")
                window = settings_control("temporal_window", settings.temporal_window)
                fps = gr.Markdown(elem_id="fps")
            live_state = gr.State()
            live_controls = {"method": live_method, "live_input_size": live_size, "temporal_window": window}
            camera.stream(handlers.stream_frame, [camera, live_state], [live, fps, live_state],
                          inputs_kwargs=live_controls, stream_every=0.1, time_limit=120, concurrency_limit=2,
                          api_visibility="private")
            # API clients cannot consume a stream: /erase_frame takes one frame, with no trigger on the page.
            frame, frame_result = gr.Image(visible=False), gr.Image(visible=False)
            gr.on([], handlers.erase_frame, [frame], frame_result, api_name="erase_frame", preprocess=False,
                  inputs_kwargs={"method": live_method, "live_input_size": live_size})
    demo.queue(default_concurrency_limit=2, max_size=32)
    return demo


def launch(demo: gr.Blocks, port: int | None = None, **options) -> None:
    """Serve ``demo`` as ``python app.py`` does, at ``port`` (default: ``GRADIO_SERVER_PORT``, else 7860);
    ``options``: more arguments of ``demo.launch``."""
    demo.launch(server_port=port, ssr_mode=False, allowed_paths=[str(EXAMPLES_DIR)], **options)


def main(argv: list[str] | None = None) -> None:
    """``python app.py``: serve the page in this server's own folder until Ctrl-C or SIGTERM, then delete it."""
    args = parse_args(argv)
    folder = use_server_folder()
    demo = build_demo(args.model, args.max_pixels)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        launch(demo, args.port)
    finally:  # Ctrl-C ends launch(); SIGTERM raises SystemExit from it
        demo.close()
        shutil.rmtree(folder, ignore_errors=True)


def __getattr__(name: str) -> gr.Blocks:
    """``demo``, built on first use in this server's own folder: the page from the environment variables, for
    tools that import this file and look for a module-level ``demo``."""
    if name != "demo":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    use_server_folder()
    globals()["demo"] = demo = build_demo()
    return demo


if __name__ == "__main__":
    main()
