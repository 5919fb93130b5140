"""Call the web page's JavaScript modules (``web/*.js``) under Node from the tests, with numpy arrays in and out.

:func:`call_js` runs one exported function, :func:`js_constant` reads one exported constant and :func:`run_js` runs
several calls in one Node process (``tests/web_runner.mjs``). numpy arrays become typed arrays of their dtype (bool
masks Uint8Array) and typed arrays come back as numpy arrays; :func:`rgba` makes the page's image objects.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

NODE = shutil.which("node")
RUNNER = Path(__file__).with_name("web_runner.mjs")
_JS_TYPES = {"Uint8Array": np.uint8, "Uint8ClampedArray": np.uint8, "Int32Array": np.int32,
             "Float32Array": np.float32, "Float64Array": np.float64}
_NUMPY_TYPES = {np.dtype(bool): "Uint8Array", np.dtype(np.uint8): "Uint8Array", np.dtype(np.int32): "Int32Array",
                np.dtype(np.float32): "Float32Array", np.dtype(np.float64): "Float64Array"}


class JSError(Exception):
    """A JavaScript function threw; the message is the error's."""


def typed(array: np.ndarray, js_type: str | None = None) -> dict:
    """``array`` (flattened) as a typed array, of ``js_type`` or of the type matching its dtype."""
    array = np.ascontiguousarray(array)
    js_type = js_type or _NUMPY_TYPES[array.dtype]
    data = array.astype(_JS_TYPES[js_type], copy=False).tobytes()
    return {"$typed": js_type, "base64": base64.b64encode(data).decode()}


def rgba(image: np.ndarray) -> dict:
    """An RGB uint8 (H, W, 3) array as the page's image: {width, height, data: Uint8ClampedArray RGBA}."""
    h, w = image.shape[:2]
    pixels = np.concatenate([image, np.full((h, w, 1), 255, np.uint8)], axis=-1)
    return {"width": w, "height": h, "data": typed(pixels, "Uint8ClampedArray")}


def rgb(image: dict) -> np.ndarray:
    """The RGB (H, W, 3) pixels of a page image that came back from :func:`call_js`."""
    return image["data"].reshape(image["height"], image["width"], 4)[..., :3]


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return typed(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict) and "$typed" not in value:
        return {k: _encode(v) for k, v in value.items()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "$typed" in value:
        return np.frombuffer(base64.b64decode(value["base64"]), _JS_TYPES[value["$typed"]]).copy()
    if "$error" in value:
        return JSError(value["$error"])
    return {k: _decode(v) for k, v in value.items()}


def run_js(*calls: tuple[str, str, list | None]) -> list:
    """Run ``(module, name, args)`` calls (``args`` None: read the constant ``name``) in one Node process; a call
    that threw gives a :class:`JSError` in its place."""
    request = [{"module": module, "name": name, "args": None if args is None else _encode(list(args))}
               for module, name, args in calls]
    done = subprocess.run([NODE, str(RUNNER)], input=json.dumps(request), capture_output=True, text=True,
                          timeout=120)
    if done.returncode:
        raise RuntimeError(f"node {RUNNER.name} failed:\n{done.stderr}")
    return _decode(json.loads(done.stdout))


def call_js(module: str, name: str, *args: Any) -> Any:
    """The result of ``name(...args)`` exported by ``web/<module>``; raises :class:`JSError` when it throws."""
    result = run_js((module, name, args))[0]
    if isinstance(result, JSError):
        raise result
    return result


def js_constant(module: str, name: str) -> Any:
    """The constant ``name`` exported by ``web/<module>``."""
    return run_js((module, name, None))[0]
