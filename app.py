"""FaceErase web demo (Gradio): erase every face in a photo or in live webcam frames.

A thin layer over the :mod:`faceerase` library. :func:`build_demo` builds the page for one model, loaded once
from ``--model`` or the ``FACEERASE_MODEL`` environment variable (folder or Hub repo id), else from the embedded
``hub/`` folder; if it does not load, the page still opens and says why. Uploads over ``--max-pixels`` (default:
``FACEERASE_MAX_PIXELS``, else 40 megapixels) are refused with a message.
``python app.py [--model M] [--port P] [--max-pixels N]`` serves it (the Hugging Face Space runs this file).
Importing the module loads no model and claims no folder; its ``demo`` (the page from the environment variables,
for tools that import this file) is built on first use.

The image tab's review (issue 20): a click on a region of the review picture keeps it un-erased or erases it again, a
drag adds a region, without a network pass; the edits are the session's own (a :class:`Review` in gr.State), and
``/review`` applies one from a script. The audit record downloaded beside the image is the command's report line.

Gradio's files (uploads, outputs) live in a folder of this server's own inside Gradio's temporary folder; it
is deleted when the server stops (Ctrl-C or SIGTERM), and by the next server if this one was killed.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from types import FrameType
from typing import Any

import cv2
import gradio as gr
import numpy as np
from gradio.data_classes import ImageData
from gradio.utils import get_upload_folder
from PIL import Image

from faceerase.engines.files import ANONYMIZED, image_findings, record_context, stamped
from faceerase.erase.edits import ADD_SHAPES, Added, Edits, clip_box
from faceerase.erase.fill import METHODS
from faceerase.erase.masks import MASK_SHAPES, Region
from faceerase.erase.overlay import BOX_COLOR, KEPT_COLOR
from faceerase.erase.pipeline import EraseResult, FaceEraser, ModelLoadError, load_model
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
CACHE_BYTES = 512 * 2**20  # probability maps and decoded images kept for re-rendering, all sessions together
VIEW_JPEG_QUALITY = 92  # of the pictures only shown (the original under the mask overlay, the review picture)
SERVER_FOLDER_PREFIX = "faceerase-server-"  # a server's own folder in Gradio's temporary folder
MASK_LABEL, MASK_COLOR = "face mask", "#ff2d55"
MASK_RGB = tuple(int(MASK_COLOR[i:i + 2], 16) for i in (1, 3, 5))
ADDED_COLOR = (0, 170, 255)  # RGB of a region added by hand on the review picture
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
    layer[mask] = (*MASK_RGB, 255)
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


def review_picture(image: np.ndarray, mask: np.ndarray, regions: Sequence[Region]) -> np.ndarray:
    """The original ``image`` with the erased ``mask`` tinted :data:`MASK_COLOR` and each region's box drawn and
    labelled with its id: ``1: 0.98`` (its score) for an erased model region in the library's box colour,
    ``1: kept`` in its kept colour, ``2: added`` in :data:`ADDED_COLOR`."""
    out = image.copy()
    out[mask] = (out[mask] * 0.55 + np.array(MASK_RGB) * 0.45).astype(np.uint8)
    side = max(image.shape[:2])
    thickness, scale, font = max(1, round(side / 400)), max(0.4, side / 1200), cv2.FONT_HERSHEY_SIMPLEX
    for region in regions:
        color, words = ((ADDED_COLOR, "added") if region.source == "added" else
                        (BOX_COLOR, f"{region.score:.2f}") if region.erased else (KEPT_COLOR, "kept"))
        label, (x, y, w, h) = f"{region.id}: {words}", region.box
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), color, thickness)
        (text_w, text_h), base = cv2.getTextSize(label, font, scale, thickness)
        tag_h = text_h + base + 2 * thickness
        top = y - tag_h if y >= tag_h else y  # above the box, else inside it
        cv2.rectangle(out, (x, top), (x + text_w + 2 * thickness, top + tag_h), color, -1)
        cv2.putText(out, label, (x + thickness, top + thickness + text_h), font, scale, (0, 0, 0), thickness,
                    cv2.LINE_AA)
    return out


def region_table(regions: Sequence[Region]) -> str:
    """The regions as a Markdown table: id, score, what happens to it (erased, kept or added) and its box."""
    if not regions:
        return "No regions: drag a box on the review picture to add one."
    rows = [f"| {r.id} | {r.score:.2f} | {'added' if r.source == 'added' else 'erased' if r.erased else '**kept**'} "
            f"| {r.box[0]}, {r.box[1]}, {r.box[2]}×{r.box[3]} |" for r in regions]
    return "\n".join(["| region | score | | box (x, y, w×h) |", "|---|---|---|---|", *rows])


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


def save_view(pixels: np.ndarray, folder: Path, name: str) -> str:
    """Write RGB ``pixels`` that are only shown as ``folder/name.jpg`` (quality :data:`VIEW_JPEG_QUALITY`, no
    metadata): a 12-megapixel photo takes a tenth of the time PNG takes; returns its path."""
    path = folder / f"{name}.jpg"
    if not cv2.imwrite(str(path), pixels[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, VIEW_JPEG_QUALITY]):
        raise gr.Error(f"Could not write the {name} image on the server.")
    return str(path)


def upload_name(upload: dict) -> str:
    """The file name of ``upload`` (Gradio's file data) as its user knows it."""
    return Path(upload.get("orig_name") or upload["path"]).name


def upload_stem(upload: dict) -> str:
    """The stem of :func:`upload_name` with letters, digits, ``.``, ``-`` and ``_`` kept (``image`` if none is)."""
    return re.sub(r"[^\w.-]+", "_", Path(upload_name(upload)).stem).strip("._")[:100] or "image"


def download_name(upload: dict) -> str:
    """The anonymized image's file name for the readable ``upload`` (Gradio's file data):
    ``<upload stem>-anonymized`` (:func:`upload_stem`) and the extension of the upload's format in
    :data:`DOWNLOAD_EXTENSIONS`, else ``.png``."""
    with Image.open(upload["path"]) as image:
        extension = DOWNLOAD_EXTENSIONS.get(image.format, ".png")
    return f"{upload_stem(upload)}-anonymized{extension}"


def record_name(upload: dict) -> str:
    """The audit record's file name for ``upload``: ``<upload stem>.faceerase.json`` (:func:`upload_stem`)."""
    return f"{upload_stem(upload)}.faceerase.json"


def audit_record(result: EraseResult, eraser: FaceEraser, upload: dict, output: str) -> dict[str, Any]:
    """The audit record of ``result`` (``eraser``'s erasing of ``upload``, downloaded as ``output``): one line of
    the command's report (:func:`faceerase.engines.files.image_findings` and the model and settings), ``input`` and
    ``output`` named as the user knows them."""
    return stamped({"input": upload_name(upload), "output": output, "kind": "image", **image_findings(result),
                    **record_context(eraser, eraser.identity), "status": ANONYMIZED})


def save_record(record: dict[str, Any], folder: Path, name: str) -> str:
    """Write ``record`` as one JSON line, ``folder/name``; returns its path."""
    path = folder / name
    try:
        path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    except OSError:
        raise gr.Error("Could not write the audit record on the server.") from None
    return str(path)


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
    """The payload of an image or file component showing the file ``path`` (for events that skip
    postprocessing); its download button saves the file under its own name."""
    return gr.FileData(path=path, orig_name=Path(path).name, size=os.path.getsize(path)).model_dump()


def annotated(image: str, mask: str | None) -> dict:
    """The payload of the gr.AnnotatedImage showing the file ``image`` with the file ``mask`` (a
    :func:`mask_layer`; None when nothing is masked) as its annotation."""
    return {"image": served(image), "annotations": [] if mask is None else [
        {"image": served(mask), "label": MASK_LABEL}]}


# --------------------------------------------------------------------------- review

REVIEW_HELP = ("**Review before publishing.** Click a region to keep it un-erased (a false positive: a sign, a pet, "
               "a texture); click it again to erase it again. Drag a box to erase a region the model missed (click "
               "it to remove it). Or type a region's number, or a box, in the keyboard field. The result, this list "
               "and both downloads follow at once.")
REVIEW_JS = """() => {
  // Pointer events on the review picture (#review-image): a click (under MIN_DRAG px of movement) toggles the region
  // under the pointer, a drag adds a box; each is written, in image pixels, as JSON into the hidden #review-action
  // box, then the hidden #review-send button runs the review handler on it.
  const MIN_DRAG = 5;
  let start = null, band = null;
  const style = document.createElement("style");
  style.textContent = "#review-image img { cursor: crosshair; touch-action: none; user-select: none; " +
    "-webkit-user-drag: none; } #review-band { position: fixed; z-index: 1000; pointer-events: none; " +
    "border: 2px dashed #00aaff; background: rgba(0, 170, 255, 0.15); }";
  document.head.appendChild(style);
  const picture = (event) => event.target instanceof HTMLImageElement && event.target.closest("#review-image") ?
    event.target : null;
  function toImage(img, clientX, clientY) {  // CSS pixels to image pixels (object-fit fill, contain or scale-down)
    const rect = img.getBoundingClientRect(), fit = getComputedStyle(img).objectFit;
    let sx = rect.width / img.naturalWidth, sy = rect.height / img.naturalHeight;
    if (fit !== "fill") sx = sy = Math.min(sx, sy, fit === "scale-down" ? 1 : Infinity);
    const x = (clientX - rect.left - (rect.width - img.naturalWidth * sx) / 2) / sx;
    const y = (clientY - rect.top - (rect.height - img.naturalHeight * sy) / 2) / sy;
    return [Math.min(Math.max(x, 0), img.naturalWidth), Math.min(Math.max(y, 0), img.naturalHeight)];
  }
  function send(action) {
    const box = document.querySelector("#review-action textarea");
    box.value = JSON.stringify(action);
    box.dispatchEvent(new Event("input", {bubbles: true}));
    setTimeout(() => document.querySelector("#review-send").click());  // once the box's value has reached the page
  }
  document.addEventListener("dragstart", (event) => { if (picture(event)) event.preventDefault(); }, true);
  document.addEventListener("pointerdown", (event) => {
    const img = picture(event);
    if (!img || event.button !== 0 || !img.naturalWidth) return;
    event.preventDefault();
    img.setPointerCapture(event.pointerId);
    start = {img, x: event.clientX, y: event.clientY};
  }, true);
  document.addEventListener("pointermove", (event) => {
    if (!start || Math.hypot(event.clientX - start.x, event.clientY - start.y) < MIN_DRAG) return;
    if (!band) {
      band = document.createElement("div");
      band.id = "review-band";
      document.body.appendChild(band);
    }
    Object.assign(band.style, {left: Math.min(start.x, event.clientX) + "px", top: Math.min(start.y, event.clientY) +
      "px", width: Math.abs(event.clientX - start.x) + "px", height: Math.abs(event.clientY - start.y) + "px"});
  }, true);
  document.addEventListener("pointerup", (event) => {
    if (!start) return;
    const {img, x, y} = start, dragged = Math.hypot(event.clientX - x, event.clientY - y) >= MIN_DRAG;
    start = null;
    if (band) { band.remove(); band = null; }
    const [x0, y0] = toImage(img, x, y), [x1, y1] = toImage(img, event.clientX, event.clientY);
    if (!dragged) send({click: [Math.floor(x0), Math.floor(y0)]});
    else send({add: [Math.round(Math.min(x0, x1)), Math.round(Math.min(y0, y1)), Math.round(Math.abs(x1 - x0)),
                     Math.round(Math.abs(y1 - y0))]});
  }, true);
}"""
"""The page's script (run once when it loads): the review picture's clicks and drags, sent to the review handler."""


@dataclass(frozen=True)
class Review:
    """The image tab's state in one session (a gr.State: never seen by another session): the image last erased,
    how, and a person's edits of it (:mod:`faceerase.erase.edits`)."""

    upload: dict
    """Gradio's file data of the image."""
    digest: str
    """Its :func:`image_digest`: another image starts a new review."""
    settings: EraseSettings
    key: str | None
    """Its probability map in the :class:`ProbabilityCache` (None: not cached)."""
    edits: Edits = Edits()
    regions: tuple[Region, ...] = ()
    """The regions shown, edits applied (model regions, then added ones): what the next action refers to."""
    pixels_key: str | None = None
    """Its decoded pixels in the :class:`ProbabilityCache` (None: not cached): a review action does not decode the
    upload again."""
    original: str | None = None
    """The file showing it under the mask overlay, written once (:func:`save_view`) and shown again by each review
    action while it exists."""


def image_digest(image: np.ndarray) -> str:
    """What identifies the pixels of a C-contiguous ``image`` (hashed in place, not copied)."""
    return f"{hashlib.sha1(image).hexdigest()}-{image.shape}"


def parse_action(text: str) -> tuple[str, tuple[int, ...]]:
    """One review action from its JSON: ``{"click": [x, y]}`` toggles the region whose box holds that pixel,
    ``{"toggle": id}`` the region ``id`` (a model region is kept un-erased, or erased again; an added one is
    removed), ``{"add": [x, y, w, h]}`` erases that box too. Returns the action's name and its whole numbers; a
    gr.Error says what is malformed."""
    sizes = {"click": 2, "toggle": 1, "add": 4}
    try:
        action = json.loads(text)
        (name, value), = action.items()
        numbers = tuple(int(round(float(v))) for v in (value if isinstance(value, list) else [value]))
        if name not in sizes or len(numbers) != sizes[name]:
            raise ValueError(name)
    except (ValueError, TypeError, AttributeError, OverflowError):
        raise gr.Error(f"Invalid review action {text[:200]!r}: give one of {{\"click\": [x, y]}}, "
                       f"{{\"toggle\": id}} or {{\"add\": [x, y, w, h]}}") from None
    return name, numbers


TYPED_NUMBER = r"-?\d+(?:\.\d+)?"


def typed_action(text: str) -> tuple[str, tuple[int, ...]]:
    """The review action that a person typed in the keyboard field, as :func:`parse_action` returns it: one number
    toggles that region, four (x, y, w, h; separated by commas or spaces) add that box; a gr.Error otherwise."""
    numbers = tuple(int(round(float(n))) for n in re.findall(TYPED_NUMBER, text))
    if not re.fullmatch(rf"\s*{TYPED_NUMBER}(?:\s*[,;\s]\s*{TYPED_NUMBER})*\s*", text) or len(numbers) not in (1, 4):
        raise gr.Error(f"Type a region's number to keep or erase it (e.g. 2), or a box to add as x, y, width, "
                       f"height in pixels (e.g. 120, 80, 60, 60); got {text[:100]!r}.")
    return ("toggle" if len(numbers) == 1 else "add"), numbers


def region_at(regions: Sequence[Region], x: int, y: int) -> int | None:
    """The id of the region whose box holds the pixel (``x``, ``y``), the smallest box where several do; None
    where none does."""
    inside = [r for r in regions if r.box[0] <= x < r.box[0] + r.box[2] and r.box[1] <= y < r.box[1] + r.box[3]]
    return min(inside, key=lambda r: r.box[2] * r.box[3]).id if inside else None


def toggled(edits: Edits, regions: Sequence[Region], region_id: int) -> Edits:
    """``edits`` with the region ``region_id`` of ``regions`` (those shown) toggled: a model region kept un-erased
    (its box recorded) or erased again, an added region removed."""
    region = next((r for r in regions if r.id == region_id), None)
    if region is None:
        raise gr.Error(f"There is no region {region_id}: the image has {len(regions)} region"
                       f"{'s' * (len(regions) != 1)}.")
    if region.source == "added":
        index = region_id - 1 - sum(r.source == "model" for r in regions)
        return replace(edits, add=edits.add[:index] + edits.add[index + 1:])
    kept = dict(zip(edits.keep, edits.kept_boxes))
    if kept.pop(region_id, None) is None:
        kept[region_id] = region.box
    return replace(edits, keep=tuple(kept), kept_boxes=tuple(kept.values()))


def with_added(edits: Edits, box: tuple[int, ...], shape: str, width: int, height: int) -> Edits:
    """``edits`` with the ``box`` (x, y, w, h), cut to the ``width`` x ``height`` image, added as a region shaped
    ``shape``; a gr.Error when the box is empty or outside the image."""
    try:
        added = Added(box, shape)  # type: ignore[arg-type]
        added = replace(added, box=clip_box(added.box, width, height))
    except ValueError as error:
        raise gr.Error(f"Cannot add this region: {error}") from None
    return replace(edits, add=(*edits.add, added))


# --------------------------------------------------------------------------- handlers

class ProbabilityCache:
    """Probability maps by (session, image pixels, network settings), and the decoded images themselves by
    (session, image pixels), least recently used dropped beyond a byte budget.

    One store for all sessions so that memory stays bounded however many users there are, but a map serves
    only the session that computed it: no one learns from the page whether another user sent the same image.
    """

    def __init__(self, max_bytes: int = CACHE_BYTES):
        self.max_bytes = max_bytes
        self._maps: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(session: str, digest: str, settings: EraseSettings) -> str:
        """The key of the image of :func:`image_digest` ``digest`` run with the network ``settings`` in
        ``session``."""
        return f"{session}-{digest}-{settings.group('network')}"

    @staticmethod
    def pixels_key(session: str, digest: str) -> str:
        """The key of the decoded image of :func:`image_digest` ``digest`` in ``session``."""
        return f"{session}-{digest}-pixels"

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


MAX_ERASERS = 16  # erasers kept by Handlers.eraser, one per settings


class Handlers:
    """The page's event handlers and what they share: the model (or why it did not load), the page's settings (the
    model's ``inference.json`` resolved: the controls' defaults), the upload limit and the probability cache."""

    def __init__(self, model: FaceEraseUNet | None, error: str | None, max_pixels: int):
        self.model, self.error, self.max_pixels = model, error, max_pixels
        self.settings = EraseSettings().resolved(model.settings if model is not None else DEFAULT_SETTINGS)
        self.cache = ProbabilityCache()
        self._erasers: OrderedDict[EraseSettings, FaceEraser] = OrderedDict()
        self._erasers_lock = threading.Lock()

    def eraser(self, settings: EraseSettings) -> FaceEraser:
        """A FaceEraser on the shared model with ``settings``, one per settings (the :data:`MAX_ERASERS` last used
        are kept: making one walks the model's modules, milliseconds a webcam frame should not pay); its runner
        comes from the cache of loaded models (:func:`faceerase.model.runners.load`: the first request exports the
        model once). Erasers hold no state of their own, so requests share them."""
        if self.model is None:
            raise gr.Error(f"The model is not loaded: {self.error}")
        with self._erasers_lock:
            eraser = self._erasers.pop(settings, None) or FaceEraser(self.model, settings=settings)
            self._erasers[settings] = eraser
            while len(self._erasers) > MAX_ERASERS:
                self._erasers.popitem(last=False)
        return eraser

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

    def erase_image(self, upload: dict | None, review: Review | None, request: gr.Request, **controls: Any) -> tuple:
        """Image tab: network pass (skipped when this session has seen this image with these network settings),
        then post-processing with the session's ``review`` of this image (none for another image);
        ``controls``: the values of the tab's controls, by setting.

        Takes and returns Gradio's payloads (the event neither preprocesses nor postprocesses), the images as files
        of :func:`output_folder`: the probability map, histogram, threshold, then the outputs of :meth:`show`.
        """
        if not upload:
            return None, None, None, None, None, "", None, "", None, None
        settings = self.settings_of(controls)
        image = self.read_upload(upload)
        digest = image_digest(image)
        key = pixels_key = None
        if request.session_hash:
            key = self.cache.key(request.session_hash, digest, settings)
            pixels_key = self.cache.pixels_key(request.session_hash, digest)
            self.cache.put(pixels_key, image)
        same = review is not None and review.digest == digest
        edits, original = (review.edits, review.original) if same else (Edits(), None)
        prob, network = self.probabilities(image, settings, key)
        result, folder, shown = self.show(Review(upload, digest, settings, key, edits, pixels_key=pixels_key,
                                                 original=original), image, prob, network)
        return (served(save_view(heat_map(prob), folder, "probability")),
                served(save_png(histogram(prob, result.threshold), folder, "histogram")),
                round(float(result.threshold), 4), *shown)

    def review(self, action: str, add_shape: str, review: Review | None) -> tuple:
        """Image tab's review (the review picture's clicks and drags, or ``/review``): one :func:`parse_action`
        applied by :meth:`apply_action`."""
        return self.apply_action(*parse_action(action), add_shape, review)

    def typed_review(self, text: str, add_shape: str, review: Review | None) -> tuple:
        """Image tab's review by keyboard: the field's ``text`` (:func:`typed_action`) applied by
        :meth:`apply_action`, as a click or a drag is."""
        return self.apply_action(*typed_action(text), add_shape, review)

    def apply_action(self, name: str, numbers: tuple[int, ...], add_shape: str, review: Review | None) -> tuple:
        """One review action (``name``, ``numbers``: see :func:`parse_action`) applied to this session's edits of
        the image last erased (an added box shaped ``add_shape``), then that image shown again by :meth:`show`,
        without a network pass while its probabilities are cached."""
        if review is None:
            raise gr.Error("There is nothing to review yet: erase an image first.")
        image = self.cache.get(review.pixels_key) if review.pixels_key else None
        if image is None:
            image = self.read_upload(review.upload)
        if name == "add":
            edits = with_added(review.edits, numbers, add_shape, image.shape[1], image.shape[0])
        else:
            region_id = numbers[0] if name == "toggle" else region_at(review.regions, *numbers)
            if region_id is None:
                raise gr.Error("No region there: click inside a region's box, or drag a box to add one.")
            edits = toggled(review.edits, review.regions, region_id)
        prob, network = self.probabilities(image, review.settings, review.key)
        return self.show(replace(review, edits=edits), image, prob, network)[2]

    def probabilities(self, image: np.ndarray, settings: EraseSettings, key: str | None) -> tuple[np.ndarray, str]:
        """The face probabilities of ``image`` with the network ``settings``: this session's cached map at ``key``,
        else a network pass (then cached); and what the summary says of it."""
        prob = self.cache.get(key) if key else None
        if prob is not None:
            return prob, "network skipped (cached probabilities)"
        start = time.perf_counter()
        prob = self.eraser(settings).predict([image])[0]
        if key:
            self.cache.put(key, prob)
        return prob, f"network {1000 * (time.perf_counter() - start):.0f} ms at {settings.input_size or 'original'} px"

    def show(self, review: Review, image: np.ndarray, prob: np.ndarray,
             network: str) -> tuple[EraseResult, Path, tuple]:
        """Post-process ``image`` with the settings and edits of ``review`` and write what the page shows into a
        new :func:`output_folder`. Kept regions that are not there with these settings (the regions changed) are
        erased again, and the summary says so; added ones stay.

        Returns the result, the folder and the payloads of the mask overlay, the download, the summary (which
        ends with ``network``), the review picture, the region table, the audit record and the new ``review``.
        """
        eraser, note = self.eraser(review.settings), ""
        try:
            result = eraser.postprocess(image, prob, edits=review.edits)
        except ValueError:  # a kept region is not where it was reviewed (or is gone): never keep another one
            if not review.edits.keep:
                raise
            review = replace(review, edits=replace(review.edits, keep=(), kept_boxes=()))
            result = eraser.postprocess(image, prob, edits=review.edits)
            note = " · the regions changed with these settings: the kept ones are erased again"
        folder = output_folder()
        if review.original is None or not Path(review.original).exists():  # Gradio's delete_cache removes old files
            review = replace(review, original=save_view(image, folder, "image"))
        review = replace(review, regions=tuple(result.regions))
        download = save_download(result.anonymized, folder, download_name(review.upload))
        record = audit_record(result, eraser, review.upload, Path(download).name)
        n, faces = record["n_regions"], record["face_estimate"]
        edited = ""
        if review.edits:
            edited = f" · reviewed: {len(review.edits.keep)} kept, {len(review.edits.add)} added"
        summary = (f"**{n} region{'s' * (n != 1)} (about {faces} face{'s' * (faces != 1)})**, "
                   f"{100 * result.mask.mean():.1f}% of the image masked · threshold {result.threshold:.3f} "
                   f"({review.settings.threshold_mode}) · {network}{edited}{note}")
        mask = save_png(mask_layer(result.mask), folder, "mask") if result.mask.any() else None
        return result, folder, (
            annotated(review.original, mask), served(download), summary,
            served(save_view(review_picture(image, result.mask, result.regions), folder, "review")),
            region_table(result.regions), served(save_record(record, folder, record_name(review.upload))), review)

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
        """Webcam tab: anonymize one streamed frame with temporal smoothing over the last frames; report the frames
        per second sent back (:class:`FrameRate`) and the server's time per frame. ``controls``: the values of the
        tab's controls, by setting.

        Returns the payloads themselves (the event skips postprocessing): the frame as a JPEG in the payload
        (:func:`jpeg_payload`: nothing written on the server, no second request from the page), the readout as
        Markdown, the state.
        """
        if frame is None:
            return None, "", state
        settings = self.settings_of(controls).live()
        if state is None or state["smoother"].window != settings.temporal_window:
            state = {"smoother": TemporalMax(settings.temporal_window), "rate": FrameRate()}
        start = time.perf_counter()
        result = next(anonymize_frames(self.eraser(settings), iter([frame]), state["smoother"], batch_size=1))
        image = jpeg_payload(result.anonymized)
        now = time.perf_counter()
        return (image, f"**{state['rate'](now):.1f} frames/s** · {1000 * (now - start):.0f} ms per frame "
                       f"({settings.input_size} px network input)", state)


# --------------------------------------------------------------------------- the webcam tab

WEBCAM_SIZE = (640, 480)
"""The camera resolution the webcam tab asks the browser for (Gradio asks for 1920x1440 by default): every webcam
offers it, and the frames are sent, anonymized and shown at that size: a ninth of the pixels to encode, upload,
decode, fill and send back; the network sees the live input size of it."""
WEBCAM_CONSTRAINTS = {"video": {"width": {"ideal": WEBCAM_SIZE[0]}, "height": {"ideal": WEBCAM_SIZE[1]}}}
"""The browser's ``getUserMedia`` constraints that ask for :data:`WEBCAM_SIZE`."""
STREAM_EVERY = 0.055
"""Seconds between the frames the webcam tab sends (18 a second at most). Gradio's page sends one each interval,
even while the last one is on the server, which anonymizes the latest it has and drops the others: a longer interval
caps the rate (0.1 s: 10 frames/s at best, fewer since a frame waits for the next tick), a shorter one spends the
browser's and the server's CPU on frames that are dropped (0.04 s sent two frames for each one anonymized, on cores
the two share when they run on one machine: ``benchmarks/results/app_webcam.md``)."""
LIVE_JPEG_QUALITY = 85  # of the anonymized webcam frames sent back
RATE_WINDOW = 2.0  # seconds of frames the webcam tab's frame rate counts


class FrameRate:
    """Frames per second over the last ``window`` seconds, counted as frames are sent back: the rate at which the
    page receives them (the webcam tab sends the next one meanwhile), not the inverse of the time one takes on the
    server."""

    def __init__(self, window: float = RATE_WINDOW):
        self.window = window
        self._times: deque[float] = deque()

    def __call__(self, now: float) -> float:
        """Count a frame sent back at ``now`` (seconds on a monotonic clock); the rate over the window ending
        then (0 while it holds one frame)."""
        self._times.append(now)
        while now - self._times[0] > self.window:
            self._times.popleft()
        span = now - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


def jpeg_payload(pixels: np.ndarray, quality: int = LIVE_JPEG_QUALITY) -> dict:
    """The payload of an image component showing RGB ``pixels`` as a JPEG in a ``data:`` URL, for an event that
    skips postprocessing: the page shows it as it arrives, and no file is written on the server."""
    ok, encoded = cv2.imencode(".jpg", pixels[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise gr.Error("Could not encode the anonymized frame on the server.")
    return ImageData(url="data:image/jpeg;base64," + base64.b64encode(encoded).decode("ascii")).model_dump()


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
                with gr.Column(scale=3):
                    gr.Markdown(REVIEW_HELP)
                    review_image = gr.Image(label="Review: click a region to keep it, drag a box to add one",
                                            interactive=False, buttons=[], elem_id="review-image")
                with gr.Column(scale=2):
                    regions = gr.Markdown(elem_id="region-list")
                    typed = gr.Textbox(label="Review by keyboard", elem_id="review-typed",
                                       placeholder="2 keeps or erases region 2 · 120, 80, 60, 60 adds a box",
                                       info="a region's number, or a box to add as x, y, width, height in pixels; "
                                            "Enter applies it")
                    add_shape = gr.Radio(list(ADD_SHAPES), value=ADD_SHAPES[0], label="Shape of an added region",
                                         info="erased inside the box you drag: the ellipse inscribed in it, or "
                                              "the whole box")
                    record = gr.File(label="Audit record (JSON: the command's report line)", interactive=False,
                                     elem_id="review-record")
                    action = gr.Textbox(label="Review action", visible="hidden", elem_id="review-action")
                    send = gr.Button(visible="hidden", elem_id="review-send")
            review = gr.State()
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
            shown = [overlay, result, summary, review_image, regions, record, review]
            erasing = gr.on(triggers, handlers.erase_image, inputs=[source, review],
                            inputs_kwargs={"mode": mode, "fixed": fixed, "method": method, "dilation": dilation,
                                           "shape": shape, "input_size": size, **dict(zip(MORE_CONTROLS, more))},
                            outputs=[heat, hist, threshold_used, *shown],
                            api_name="erase", preprocess=False, postprocess=False, trigger_mode="always_last",
                            show_progress="minimal")
            erasing.success(toggle_threshold, source, threshold_used, queue=False, api_visibility="private")
            erasing.failure(handlers.clear_unreadable, source, source, preprocess=False, queue=False,
                            api_visibility="private")
            send.click(handlers.review, [action, add_shape, review], shown, api_name="review", preprocess=False,
                       postprocess=False, trigger_mode="once", show_progress="minimal")
            typed.submit(handlers.typed_review, [typed, add_shape, review], shown, preprocess=False,
                         postprocess=False, trigger_mode="once", show_progress="minimal", api_visibility="private")
            demo.load(None, js=REVIEW_JS, api_visibility="private")
        with gr.Tab("Webcam"):
            gr.Markdown(f"Live anonymization of your camera at {WEBCAM_SIZE[0]}x{WEBCAM_SIZE[1]}: one network pass "
                        "a frame at the live input size, and the maximum over a temporal window of frames, so that a "
                        "face missed once does not flash.")
            with gr.Row():
                camera = gr.Image(label="Camera", sources=["webcam"], streaming=True, type="numpy",
                                  webcam_options=gr.WebcamOptions(constraints=WEBCAM_CONSTRAINTS))
                live = gr.Image(label="Anonymized", interactive=False, elem_id="live-image")
            with gr.Row():
                live_method = gr.Dropdown(methods, value="blur", label="Anonymization", info=methods_info)
                live_size = gr.Dropdown(input_sizes, value=settings.live_input_size, label="Live input size",
                                        info=f"long side seen by the network, at most {max(WEBCAM_SIZE)} px")
                window = settings_control("temporal_window", settings.temporal_window)
                fps = gr.Markdown(elem_id="fps")
            live_state = gr.State()
            live_controls = {"method": live_method, "live_input_size": live_size, "temporal_window": window}
            camera.stream(handlers.stream_frame, [camera, live_state], [live, fps, live_state],
                          inputs_kwargs=live_controls, postprocess=False, stream_every=STREAM_EVERY, time_limit=120,
                          concurrency_limit=2, show_progress="hidden", api_visibility="private")
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
