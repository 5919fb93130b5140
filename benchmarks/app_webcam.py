"""Frames per second of the Gradio app's webcam tab, as a browser receives them.

Starts ``app.py --model MODEL`` on 127.0.0.1 at a free port (a real server, as ``app_load.py`` does), opens its
Webcam tab in headless Chromium with a fake camera (``--use-fake-device-for-media-stream``, ``--fps`` frames per
second), starts streaming and counts the anonymized frames that load into the page's "Anonymized" image (its
``load`` events) over ``--seconds`` after ``--warmup`` seconds: frames delivered to the browser, not the server's
own estimate. Reported per run:

- ``fps``: frames delivered per second (``frames`` in ``seconds``); ``readout_fps``: what the tab's own readout
  said at the end;
- ``received``: the images the page was given in that time (one replaced before it loaded was never shown);
  ``sent_frames``: the frames the page sent (Gradio's page sends one every ``stream_every`` seconds; the server
  anonymizes the latest it has and drops the others);
- ``camera``: the camera's resolution in the page; ``sent``: the size of the frames the page sent (the first one
  decoded), ``sent_kb``: their mean size as sent (base64 JPEG); ``returned_kb``: the mean size of the anonymized
  frames the page received (the data URL, or the file it fetched);
- ``server_cpu_ms`` and ``browser_cpu_ms``: CPU time (user and system, all threads) of the server process and of
  Chromium's processes per delivered frame: less sensitive to other load on the machine than the frame rate,
  though contention still inflates them;
- the 1-minute load average before and after the run.

``--server-cpus`` and ``--browser-cpus`` pin the server and Chromium (every thread of each) to CPU cores, e.g.
``--server-cpus 0 --browser-cpus 1``: the browser then takes nothing from the server's core, as when a user's
browser runs on their own machine. Unpinned, the two share every core.

``--baseline REV`` also measures the app as of git revision REV (its ``app.py`` and ``faceerase`` package, taken
from ``git archive`` into a temporary folder, on the same model), in turn with the working tree's, ``--rounds`` times
each: on a busy machine only the ratio of the two is worth quoting.

    python benchmarks/app_webcam.py --baseline HEAD --rounds 2

``results/app_webcam.{json,md}`` were measured this way on a 2-core machine shared with a model training job (this
script, the server and Chromium at ``nice -n 10``).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from common import REPO, machine, markdown_table, write_results
from PIL import Image

sys.path.insert(0, str(REPO / "tests"))
from fixtures_app import AppServer  # noqa: E402  (the tests' app launcher)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--use-fake-ui-for-media-stream"]
COLUMNS = ["app", "round", "server_cpus", "browser_cpus", "camera", "sent", "fps", "readout_fps", "frames", "received",
           "sent_frames", "seconds", "sent_kb", "returned_kb", "server_cpu_ms", "browser_cpu_ms", "load_before",
           "load_after"]

RECORD_UPLOADS = """(() => {  // before the page's scripts: the size of each frame the page sends, the first one kept
  window.uploads = { count: 0, chars: 0, first: null };
  performance.setResourceTimingBufferSize(100000);
  const fetch = window.fetch;
  window.fetch = function (resource, options) {
    const url = String(resource instanceof Request ? resource.url : resource);
    if (/\\/stream\\/[0-9a-f]+$/.test(url) && options && typeof options.body === 'string') {
      window.uploads.count += 1;
      window.uploads.chars += options.body.length;
      if (window.uploads.first === null) window.uploads.first = options.body;
    }
    return fetch.apply(this, arguments);
  };
})();"""

COUNT_FRAMES = """() => {  // every image given to the visible "Anonymized" block, and every one that loads there
  const label = [...document.querySelectorAll('[data-testid=block-label]')]
    .find((e) => e.textContent.trim() === 'Anonymized' && e.offsetParent !== null);
  const block = label.closest('.block');
  window.frames_received = 0;
  new MutationObserver((records) => {
    for (const record of records) {
      const images = record.type === 'attributes' ? [record.target]
        : [...record.addedNodes].flatMap((n) => n.nodeType === 1 ? [n, ...n.querySelectorAll('img')] : []);
      window.frames_received += images.filter((n) => n.tagName === 'IMG' && n.getAttribute('src')).length;
    }
  }).observe(block, { subtree: true, childList: true, attributes: true, attributeFilter: ['src'] });
  window.frames_loaded = [];
  block.addEventListener('load', (event) => {
    if (event.target.tagName === 'IMG') {
      const src = event.target.currentSrc || event.target.src;
      const entry = src.startsWith('data:') ? null : performance.getEntriesByName(src).pop();
      window.frames_loaded.push({ t: performance.now(), w: event.target.naturalWidth, h: event.target.naturalHeight,
                                  bytes: entry ? entry.encodedBodySize : src.length });
    }
  }, true);  // load does not bubble: listen while it goes down
}"""

SNAPSHOT = """() => ({ t: performance.now(), frames: window.frames_loaded.length, received: window.frames_received,
                      sent: window.uploads.count })"""


def process_stat(pid: int) -> tuple[str, int, float]:
    """Name, parent and CPU time so far (user and system, all threads, in seconds) of process ``pid``."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text.rsplit(")", 1)[1].split()
    return text[text.index("(") + 1:text.rindex(")")], int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf(
        "SC_CLK_TCK")


def browser_pids() -> list[int]:
    """The Chromium processes this script started (its descendants named ``chromium``)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = process_stat(int(entry.name))
            except (OSError, ValueError):  # ended meanwhile
                continue

    def ours(pid: int) -> bool:
        while pid in stats and pid != os.getpid():
            pid = stats[pid][1]
        return pid == os.getpid()

    return [pid for pid, (name, _, _) in stats.items() if name.startswith("chrom") and ours(pid)]


def browser_cpu_seconds() -> float:
    """CPU time so far of :func:`browser_pids` (user and system, all threads, in seconds)."""
    total = 0.0
    for pid in browser_pids():
        try:
            total += process_stat(pid)[2]
        except (OSError, ValueError):  # ended meanwhile
            continue
    return total


def pin(pids: list[int], cpus: set[int] | None) -> None:
    """Pin every thread of the processes ``pids`` to the cores ``cpus`` (None: leave them be); threads and processes
    started from them later inherit it."""
    if cpus is None:
        return
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                os.sched_setaffinity(int(task.name), cpus)
            except ProcessLookupError:  # ended meanwhile
                continue


def first_frame_size(body: str | None) -> str:
    """``WxH`` of the first frame the page sent (the JPEG data URL in its request's JSON body)."""
    if not body:
        return "-"
    url = json.loads(body)["data"][0]["url"]
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as image:
        return f"{image.width}x{image.height}"


def measure(playwright, server: AppServer, camera_fps: int, warmup: float, seconds: float,
            browser_cpus: set[int] | None = None) -> dict[str, Any]:
    """Stream the fake camera through the server's webcam tab; the delivered frame rate and what it cost."""
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--use-fake-device-for-media-stream=fps={camera_fps}"])
    pin(browser_pids(), browser_cpus)  # before the page: its renderer inherits it
    try:
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["camera"])
        context.add_init_script(RECORD_UPLOADS)
        page = context.new_page()
        page.set_default_timeout(120_000)
        page.goto(server.url)
        page.get_by_role("tab", name="Webcam").click()
        page.get_by_text("Click to Access Webcam").click()
        page.wait_for_function("document.querySelector('video')?.videoWidth > 0")
        camera = page.evaluate("(v => `${v.videoWidth}x${v.videoHeight}`)(document.querySelector('video'))")
        page.evaluate(COUNT_FRAMES)
        page.get_by_label("capture photo").click()  # starts streaming
        page.wait_for_function("window.frames_loaded.length > 0")
        time.sleep(warmup)
        load_before = os.getloadavg()[0]
        cpu_before, browser_before = process_stat(server.process.pid)[2], browser_cpu_seconds()
        start = page.evaluate(SNAPSHOT)
        time.sleep(seconds)
        end = page.evaluate(SNAPSHOT)
        cpu, browser_cpu = process_stat(server.process.pid)[2] - cpu_before, browser_cpu_seconds() - browser_before
        readout = page.inner_text("#fps")
        frames = page.evaluate("window.frames_loaded")[start["frames"]:end["frames"]]
        uploads = page.evaluate("window.uploads")
        version = browser.version
    finally:
        browser.close()
    delivered, elapsed = end["frames"] - start["frames"], (end["t"] - start["t"]) / 1000
    return {"camera": camera, "sent": first_frame_size(uploads["first"]),
            "returned": sorted({f"{f['w']}x{f['h']}" for f in frames}), "fps": delivered / elapsed,
            "readout_fps": float(rate[1]) if (rate := re.search(r"([\d.]+) frames/s", readout)) else None,
            "readout": readout, "frames": delivered, "received": end["received"] - start["received"],
            "sent_frames": end["sent"] - start["sent"], "seconds": elapsed,
            "sent_kb": uploads["chars"] / max(uploads["count"], 1) / 1024,
            "returned_kb": statistics.mean(f["bytes"] for f in frames) / 1024 if frames else None,
            "server_cpu_ms": 1000 * cpu / max(delivered, 1), "browser_cpu_ms": 1000 * browser_cpu / max(delivered, 1),
            "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2), "chromium": version}


def cpu_set(text: str) -> set[int]:
    """The cores of a ``--*-cpus`` option: comma-separated core numbers."""
    try:
        cpus = {int(part) for part in text.split(",")}
    except ValueError:
        raise argparse.ArgumentTypeError(f"give core numbers separated by commas, e.g. 0 or 0,1; got {text!r}")
    if not cpus <= os.sched_getaffinity(0):
        raise argparse.ArgumentTypeError(f"cores {sorted(cpus)} are not all among {sorted(os.sched_getaffinity(0))}")
    return cpus


def cpu_text(cpus: set[int] | None) -> str:
    """How a row shows a core set: its cores, or ``all``."""
    return "all" if cpus is None else ",".join(map(str, sorted(cpus)))


def baseline_app(revision: str, folder: Path) -> tuple[Path, str]:
    """The tree of git ``revision`` written into ``folder`` (its ``app.py`` imports the ``faceerase`` beside it);
    the path of its ``app.py`` and the full commit id."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{revision}^{{commit}}"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.strip()
    archive = subprocess.run(["git", "archive", commit], cwd=REPO, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "app.py", commit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="hub", help="model folder or Hub id given to app.py (default: hub)")
    parser.add_argument("--baseline", metavar="REV", help="also measure app.py of this git revision (e.g. HEAD)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each app, taken in turn (default: 1)")
    parser.add_argument("--seconds", type=float, default=20.0, help="frames counted over (default: 20)")
    parser.add_argument("--warmup", type=float, default=5.0, help="streaming before counting (default: 5)")
    parser.add_argument("--fps", type=int, default=30, help="the fake camera's frame rate (default: 30)")
    parser.add_argument("--server-cpus", type=cpu_set, help="pin the server to these cores, e.g. 0 (default: all)")
    parser.add_argument("--browser-cpus", type=cpu_set, help="pin Chromium to these cores, e.g. 1 (default: all)")
    parser.add_argument("--name", default="app_webcam", help="results/<name>.{json,md}")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright
    import gradio
    import onnxruntime

    started = time.strftime("%Y-%m-%d %H:%M")
    info = machine()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        work = Path(tmp)
        apps = {"working tree": REPO / "app.py"}
        commit = None
        if args.baseline:
            (work / "baseline").mkdir()
            path, commit = baseline_app(args.baseline, work / "baseline")
            apps = {f"{args.baseline} ({commit[:7]})": path, **apps}
        for round_ in range(1, args.rounds + 1):
            for name, app in apps.items():
                server = AppServer(args.model, work / "server.log", app=app).wait()
                pin([server.process.pid], args.server_cpus)
                try:
                    row = {"app": name, "round": round_, "server_cpus": cpu_text(args.server_cpus),
                           "browser_cpus": cpu_text(args.browser_cpus),
                           **measure(pw, server, args.fps, args.warmup, args.seconds, args.browser_cpus)}
                except Exception:
                    print(f"server log (end):\n{server.log.read_text()[-6000:]}", file=sys.stderr)
                    raise
                finally:
                    server.stop()
                rows.append(row)
                print({k: v for k, v in row.items() if k != "readout"}, flush=True)
    summary = {name: {key: statistics.median(r[key] for r in rows if r["app"] == name)
                      for key in ("fps", "server_cpu_ms", "browser_cpu_ms")} for name in apps}
    versions = {"gradio": gradio.__version__, "onnxruntime": onnxruntime.__version__,
                "playwright": metadata.version("playwright"), "chromium": rows[0]["chromium"],
                "python": platform.python_version()}
    data = {"date": started, "machine": info, "load_average_1min_at_end": round(os.getloadavg()[0], 2),
            "model": args.model, "baseline_commit": commit, "camera_fps": args.fps, "warmup_s": args.warmup,
            "seconds": args.seconds, "versions": versions, "medians": summary, "rows": rows}
    ratio = ""
    if commit:
        old, new = summary.values()
        ratio = (f" The working tree delivered {new['fps']:.1f} frames/s against {old['fps']:.1f} for "
                 f"`{args.baseline}` ({commit[:7]}): {new['fps'] / old['fps']:.1f}x, with "
                 f"{new['server_cpu_ms']:.0f} ms of server CPU per frame against {old['server_cpu_ms']:.0f} "
                 f"(medians of {args.rounds} runs each, taken in turn).")
    markdown = (f"# The app's webcam tab in a browser\n\nMeasured {started} on {info['cpu_cores_available']} CPU "
                f"cores (load average at start {info['load_average_1min']}, at end "
                f"{data['load_average_1min_at_end']}): `app.py --model {args.model}` on 127.0.0.1, its Webcam tab "
                f"in headless Chromium {versions['chromium']} with a fake {args.fps} frames/s camera, Gradio "
                f"{versions['gradio']}, onnxruntime {versions['onnxruntime']}. fps: anonymized frames loaded into "
                f"the page's image per second over {args.seconds:g} s after {args.warmup:g} s of streaming; "
                f"readout_fps: the tab's own readout; received and sent_frames: images given to the page and frames it "
                f"sent meanwhile; sent_kb and returned_kb: mean KiB per frame; server_cpu_ms and browser_cpu_ms: CPU "
                f"time per delivered frame (definitions in `benchmarks/app_webcam.py`).{ratio}\n\n"
                + markdown_table(rows, COLUMNS))
    write_results(args.name, data, markdown)


if __name__ == "__main__":
    main()
