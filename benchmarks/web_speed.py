"""In-browser speed of the web page (web/): onnxruntime-web's WebAssembly backend in headless Chromium on the CPU.

On the example photo resized to 640x480 (as ``model_speed.py``), one frame at a time, timed inside the page with
``performance.now()``; each figure is the median of ``--repeats`` runs after one warm-up (``*_min_ms``: the
fastest run, a steadier figure on a shared machine), the three page measurements taken in turn (so that other load
on the machine weighs on each alike):

- ``network_ms``: the page's ``predict`` with one pass at the frame's own size (640 px): input conversion, padding,
  onnxruntime-web;
- ``default_ms``: the page's photo path: ``predict`` at the model's input size and extra scales, then
  ``postprocess`` (auto threshold, mask growth, regions, fill);
- ``live_ms``: the camera path: one pass at the model's ``live_input_size``, then ``postprocess`` with blur;
  ``live_fps`` = 1000 / ``live_ms``;
- ``camera_ms`` / ``camera_network_ms``: the page itself erasing Chromium's fake camera (640x480) with blur: the
  median of the "ms per frame" (and "network") its readout shows over ``--repeats`` frames, which adds grabbing
  the frame, the temporal maximum and drawing the four views.

Each row is one way of serving the page: ``web/serve.py`` (cross-origin isolated: WASM threads, as many as the
cores, up to 4) and ``web/serve.py --no-isolation`` (one thread, as any server without COOP/COEP headers). The
``python onnxruntime`` row runs the same steps with the Python package (``FaceEraser``, onnx backend, the same
default fill) in the same run, for comparison.

    python benchmarks/web_speed.py
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from common import REPO, machine, markdown_table, write_results
from PIL import Image

from faceerase.erase.pipeline import FaceEraser
from faceerase.media.images import load_image

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
PHOTO = REPO / "faceerase" / "examples" / "astronaut.jpg"
SIZE = (640, 480)
TIMES = ["network_ms", "network_min_ms", "default_ms", "default_min_ms", "live_ms", "live_min_ms"]
COLUMNS = ["runtime", "threads", *TIMES, "live_fps", "camera_ms", "camera_min_ms", "camera_network_ms"]

PIPELINE = """async ([png, repeats]) => {
  const { loadModel } = await import('./model.js');
  const { predict, postprocess } = await import('./pipeline.js');
  const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes], { type: 'image/png' }));
  const context = new OffscreenCanvas(bitmap.width, bitmap.height).getContext('2d');
  context.drawImage(bitmap, 0, 0);
  const frame = context.getImageData(0, 0, bitmap.width, bitmap.height);
  const model = await loadModel('model.onnx');
  const s = model.settings;
  const erase = async (passes, method) => postprocess(frame, await predict(model, frame, passes), s,
    { thresholdMode: 'auto', method, color: [0, 0, 0] });
  const runs = {  // taken in turn, so that other load on the machine weighs on each alike
    network_ms: () => predict(model, frame, { inputSize: frame.width, extraScales: [] }),
    default_ms: () => erase({ inputSize: s.input_size, extraScales: s.extra_scales, upscale: s.upscale }, 'fill'),
    live_ms: () => erase({ inputSize: s.live_input_size, extraScales: [], upscale: s.upscale }, 'blur'),
  };
  const times = Object.fromEntries(Object.keys(runs).map((name) => [name, []]));
  for (let i = 0; i <= repeats; i++) {
    for (const [name, run] of Object.entries(runs)) {
      const start = performance.now();
      await run();
      if (i > 0) times[name].push(performance.now() - start);  // the first round warms up
    }
  }
  const median = (values) => {
    values.sort((a, b) => a - b);
    const middle = Math.floor(values.length / 2);
    return values.length % 2 ? values[middle] : (values[middle - 1] + values[middle]) / 2;
  };
  const results = { threads: model.threads, ort: model.ortVersion };
  for (const [name, values] of Object.entries(times)) {
    results[name] = median(values);
    results[name.replace(/_ms$/, '_min_ms')] = Math.min(...values);
  }
  return results;
}"""

CAMERA = """(frames) => new Promise((resolve) => {
  const readout = document.getElementById('fps');
  const seen = [];
  const observer = new MutationObserver(() => {
    const match = /(\\d+) ms per frame \\(network (\\d+) ms\\) at (\\d+)×(\\d+)/.exec(readout.textContent);
    if (match) seen.push(match.slice(1).map(Number));
    if (seen.length > frames) {  // the first frame warms up
      observer.disconnect();
      document.getElementById('stop').click();
      resolve(seen.slice(1));
    }
  });
  observer.observe(readout, { childList: true, characterData: true, subtree: true });
  document.getElementById('camera').click();
})"""


def frame_png() -> tuple[np.ndarray, str]:
    """The example photo resized to 640x480 (as model_speed.py resizes it), and as base64 PNG."""
    image = np.asarray(Image.fromarray(load_image(PHOTO)).resize(SIZE, Image.BILINEAR))
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return image, base64.b64encode(buffer.getvalue()).decode()


def browser_row(playwright, isolation: bool, png: str, repeats: int) -> dict:
    command = [sys.executable, str(REPO / "web" / "serve.py"), "--port", "0"] + ([] if isolation else ["--no-isolation"])
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = server.stdout.readline().strip()
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(permissions=["camera"]).new_page()
        page.set_default_timeout(600_000)
        page.goto(url)
        page.wait_for_selector("body[data-state=ready]")
        result = page.evaluate(PIPELINE, [png, repeats])
        page.select_option("#method", "blur")
        camera = page.evaluate(CAMERA, repeats)
        version = browser.version
        browser.close()
    finally:
        server.terminate()
        server.wait()
    sizes = {f"{w}x{h}" for *_, w, h in camera}
    return {"runtime": f"chromium {version}, onnxruntime-web {result['ort']}, "
                       f"{'cross-origin isolated' if isolation else 'not isolated'}",
            "threads": result["threads"], **{name: result[name] for name in TIMES},
            "live_fps": 1000 / result["live_ms"], "camera_ms": float(statistics.median(c[0] for c in camera)),
            "camera_min_ms": float(min(c[0] for c in camera)),
            "camera_network_ms": float(statistics.median(c[1] for c in camera)), "camera_size": sorted(sizes)}


def python_row(image: np.ndarray, repeats: int) -> dict:
    import onnxruntime

    default = FaceEraser(REPO / "hub", device="cpu", backend="onnx")
    single = FaceEraser(default.model, device="cpu", backend="onnx", input_size=max(SIZE), extra_scales=())
    live = FaceEraser(default.model, device="cpu", backend="onnx", input_size=default.settings.live_input_size,
                      extra_scales=(), method="blur")
    runs = {"network_ms": lambda: single.predict([image]),
            "default_ms": lambda: default.postprocess(image, default.predict([image])[0]),
            "live_ms": lambda: live.postprocess(image, live.predict([image])[0])}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(repeats + 1):  # in turn, as in the page; the first round warms up
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            if i:
                times[name].append(1000 * (time.perf_counter() - start))
    row = {"runtime": f"python onnxruntime {onnxruntime.__version__}", "threads": len(os.sched_getaffinity(0))}
    for name, values in times.items():
        row[name], row[name.replace("_ms", "_min_ms")] = statistics.median(values), min(values)
    row["live_fps"] = 1000 / row["live_ms"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    started = time.strftime("%Y-%m-%d %H:%M")
    info = machine()
    image, png = frame_png()
    rows = []
    with sync_playwright() as playwright:
        for isolation in (True, False):
            rows.append(browser_row(playwright, isolation, png, args.repeats))
            print(rows[-1], flush=True)
    rows.append(python_row(image, args.repeats))
    print(rows[-1], flush=True)
    data = {"date": started, "machine": info, "load_average_1min_at_end": round(os.getloadavg()[0], 2),
            "frame": f"{SIZE[0]}x{SIZE[1]}", "repeats": args.repeats, "rows": rows}
    camera_size = ", ".join(rows[0]["camera_size"])
    markdown = (f"# In-browser speed of the web page\n\nMeasured {started} on {info['cpu_cores_available']} CPU "
                f"cores (load average at start {info['load_average_1min']}, at end "
                f"{data['load_average_1min_at_end']}): headless Chromium, WebAssembly on the CPU, one "
                f"{SIZE[0]}x{SIZE[1]} frame at a time, median of {args.repeats} runs (definitions in "
                f"`benchmarks/web_speed.py`; the camera ran at {camera_size}). The last row is the Python package "
                f"(onnxruntime) on the same frame in the same run.\n\n"
                + markdown_table(rows, COLUMNS))
    write_results("web_speed", data, markdown)


if __name__ == "__main__":
    main()
