"""Load test of the Gradio app: concurrent gradio_client users against a local ``python app.py``.

Starts ``app.py --model MODEL`` on 127.0.0.1 at a free port, then runs each scenario with ``--users`` threads,
each its own ``gradio_client.Client`` sending ``--requests`` requests one after the other to ``/erase`` with the
page's default controls:

- ``same``: every request sends the same photo (the example photo resized to ``--size``): identical outputs
  written and downloaded concurrently, the network mostly skipped (cached probabilities);
- ``distinct``: every request sends its own photo (the same one, brightness shifted by a different amount), so
  every request runs the network;
- ``large`` (``--large-megapixels``, 0 to skip): one request with the photo upscaled to that many megapixels,
  the largest size the app accepts by default: the server's memory for one big upload.

Reported per scenario: failed requests (any exception, with the first messages in the JSON), p50, p95 and
maximum latency of one request (upload, queue, processing and download of every output), requests per second,
and the server's resident memory at the start of the scenario and its peak during it (``VmRSS`` and ``VmHWM`` of
the server process, the peak reset between scenarios through ``/proc/PID/clear_refs``: Linux only). When a
request fails, the end of the server's log is printed.

    python benchmarks/app_load.py --users 10 --requests 3

``results/app_load.{json,md}`` were measured this way on a 2-core machine shared with a model training job
running at a higher priority (this script and the server at ``nice -n 19``): their latencies are pessimistic
and noisy; failures and memory are not affected.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from common import REPO, machine, markdown_table, write_results

sys.path.insert(0, str(REPO / "tests"))
from fixtures_app import AppServer  # noqa: E402  (the tests' app launcher)
from gradio_client import Client, handle_file  # noqa: E402

from faceerase.media.images import load_image  # noqa: E402

PHOTO = REPO / "faceerase" / "examples" / "astronaut.jpg"
COLUMNS = ["scenario", "image", "users", "requests", "failures", "p50_s", "p95_s", "max_s", "requests_per_s",
           "server_rss_start_mb", "server_peak_rss_mb"]


def write_photo(path: Path, width: int, height: int, brightness: int = 0) -> Path:
    """The example photo resized to ``width`` x ``height``, shifted by ``brightness``, as a JPEG."""
    image = cv2.resize(load_image(PHOTO), (width, height), interpolation=cv2.INTER_CUBIC)
    image = cv2.add(image, np.full_like(image, brightness)) if brightness else image
    cv2.imwrite(str(path), image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


def memory_mb(pid: int, field: str) -> int:
    """A memory figure of process ``pid`` in MiB: ``VmRSS`` (resident now) or ``VmHWM`` (peak resident since
    its start or the last :func:`reset_peak_rss`)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) / 1024)
    raise RuntimeError(f"no {field} for process {pid}")


def reset_peak_rss(pid: int) -> None:
    """Restart the peak-memory count of process ``pid`` from its current resident memory."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def run_users(url: str, images: list[list[Path]], downloads: Path) -> tuple[list[float], list[str]]:
    """One thread per list of ``images``, each its own client sending them in turn; latencies and errors."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def user(index: int) -> None:
        client = Client(url, verbose=False, download_files=downloads / f"user{index}")
        for image in images[index]:
            start = time.perf_counter()
            try:
                client.predict(handle_file(str(image)), api_name="/erase")
                with lock:
                    latencies.append(time.perf_counter() - start)
            except Exception as error:  # noqa: BLE001  (every failure counts)
                with lock:
                    errors.append(f"{type(error).__name__}: {error}")

    with ThreadPoolExecutor(len(images)) as pool:
        list(pool.map(user, range(len(images))))
    return latencies, errors


def scenario(name: str, server: AppServer, images: list[list[Path]], downloads: Path) -> dict[str, Any]:
    """Run one scenario and summarize it as a result row."""
    pid = server.process.pid
    reset_peak_rss(pid)
    rss_start = memory_mb(pid, "VmRSS")
    start = time.perf_counter()
    latencies, errors = run_users(server.url, images, downloads / name)
    elapsed = time.perf_counter() - start
    with Image.open(images[0][0]) as first:
        width, height = first.size
    row = {"scenario": name, "image": f"{width}x{height}", "users": len(images),
           "requests": sum(len(user) for user in images), "failures": len(errors),
           "p50_s": float(np.percentile(latencies, 50)) if latencies else None,
           "p95_s": float(np.percentile(latencies, 95)) if latencies else None,
           "max_s": max(latencies, default=None), "requests_per_s": len(latencies) / elapsed,
           "server_rss_start_mb": rss_start, "server_peak_rss_mb": memory_mb(pid, "VmHWM"), "errors": errors[:5]}
    print({k: v for k, v in row.items() if k != "errors"}, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="hub", help="model folder or Hub id given to app.py (default: hub)")
    parser.add_argument("--users", type=int, default=10, help="concurrent clients (default: 10)")
    parser.add_argument("--requests", type=int, default=3, help="requests per client (default: 3)")
    parser.add_argument("--size", type=int, nargs=2, default=(1024, 768), metavar=("W", "H"),
                        help="photo size of the same and distinct scenarios (default: 1024 768)")
    parser.add_argument("--large-megapixels", type=float, default=40.0,
                        help="photo size of the large scenario (default: 40, the app's limit; 0: skip)")
    parser.add_argument("--name", default="app_load", help="results/<name>.{json,md}")
    args = parser.parse_args()

    started = time.strftime("%Y-%m-%d %H:%M")
    info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        width, height = args.size
        same = write_photo(work / "same.jpg", width, height)
        distinct = [[write_photo(work / f"u{u}-r{r}.jpg", width, height, 1 + u * args.requests + r)
                     for r in range(args.requests)] for u in range(args.users)]
        server = AppServer(args.model, work / "server.log").wait()
        try:
            rows = [scenario("same", server, [[same] * args.requests] * args.users, work),
                    scenario("distinct", server, distinct, work)]
            if args.large_megapixels:
                side = (args.large_megapixels * 1e6 / (width * height)) ** 0.5
                large = write_photo(work / "large.jpg", int(width * side), int(height * side))
                rows.append(scenario("large", server, [[large]], work))
        finally:
            server.stop()
        if any(row["failures"] for row in rows):
            print(f"server log (end):\n{server.log.read_text()[-6000:]}", file=sys.stderr)
    data = {"date": started, "machine": info, "load_average_1min_at_end": round(os.getloadavg()[0], 2),
            "model": args.model, "users": args.users, "requests_per_user": args.requests, "rows": rows}
    markdown = (f"# Gradio app under load\n\nMeasured {started}: `app.py --model {args.model}` on 127.0.0.1, "
                f"{args.users} concurrent gradio_client users x {args.requests} requests to `/erase` with the "
                f"page's default controls (load average at start {info['load_average_1min']}, at end "
                f"{data['load_average_1min_at_end']}). Latency: one request, upload to last output "
                f"downloaded, in seconds; peak RSS: the server process during the scenario.\n\n"
                + markdown_table(rows, COLUMNS))
    write_results(args.name, data, markdown)


if __name__ == "__main__":
    main()
