"""Speed of each model preset: network forward pass and whole pipeline, on CPU (and CUDA when present).

Weights are untrained (speed does not depend on them). On CPU, torch uses as many threads as cores are
available; each figure is the median of ``--repeats`` runs after ``--warmup`` runs (fewer repeats, at
least 3, for configurations slower than ``--budget`` seconds in all). Per preset and size:

- ``forward_ms``: ``model.predict_proba`` on one (1, 3, H, W) image (padding, network, sigmoid);
- ``pipeline_ms``: ``FaceEraser.predict`` + ``FaceEraser.postprocess`` (threshold auto, mask clean-up,
  regions, the default fill) on a photo at that size with ``input_size`` = its long side. Untrained
  weights give random masks whose inpainting cost is unrealistic, so ``postprocess`` is given a fixed
  probability map with four face-sized blobs (about 2% of the image) instead of the network output;
- ``*_min_ms``: the fastest run, a steadier figure on a shared machine;
- ``fps`` = 1000 / ``pipeline_ms`` (one frame at a time; the ``live`` preset targets >= 25 at 640x480).

On CUDA: forward images/s in bf16 autocast, channels-last, batches of ``--batch`` 640x480 images.

    python benchmarks/speed.py                      # -> results/speed_cpu.{json,md} (and speed_cuda)
    python benchmarks/speed.py --presets live fast --repeats 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from common import REPO, machine, markdown_table, write_results

from faceerase.erase.pipeline import FaceEraser
from faceerase.media.images import load_image
from faceerase.model.network import PRESETS, FaceEraseUNet

SIZES = ((640, 480), (1024, 768))
PHOTO = REPO / "faceerase" / "examples" / "astronaut.jpg"


def timings(fn: Callable[[], object], repeats: int, warmup: int, budget: float,
            sync: Callable[[], None] = lambda: None) -> tuple[float, float]:
    """(median, min) wall time of ``fn`` after ``warmup`` calls; stops early (>= 3 runs) past ``budget`` s."""
    for _ in range(warmup):
        fn()
    sync()
    times: list[float] = []
    while len(times) < repeats and (len(times) < 3 or sum(times) < budget):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def face_blobs(height: int, width: int) -> np.ndarray:
    """A probability map with four elliptical face-like blobs (peak 0.95) on a 0.02 background."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    prob = np.full((height, width), 0.02, np.float32)
    for cx, cy in ((0.25, 0.3), (0.5, 0.35), (0.75, 0.3), (0.4, 0.7)):
        rx, ry = 0.045 * width, 0.06 * width
        d = ((xx - cx * width) / rx) ** 2 + ((yy - cy * height) / ry) ** 2
        prob = np.maximum(prob, 0.95 * np.exp(-d * 1.5))
    return prob


def photo(width: int, height: int) -> np.ndarray:
    """The example photo resized to ``width`` x ``height`` (RGB uint8)."""
    from PIL import Image

    return np.asarray(Image.fromarray(load_image(PHOTO)).resize((width, height), Image.BILINEAR))


def cpu_rows(presets: list[str], repeats: int, warmup: int, budget: float) -> list[dict]:
    rows = []
    for name in presets:
        model = FaceEraseUNet.from_preset(name).eval()
        params = sum(p.numel() for p in model.parameters())
        for width, height in SIZES:
            x = torch.rand(1, 3, height, width).contiguous(memory_format=torch.channels_last)  # as in predict
            image, prob = photo(width, height), face_blobs(height, width)
            eraser = FaceEraser(model, device="cpu", input_size=max(width, height))
            forward, forward_min = timings(lambda: model.predict_proba(x), repeats, warmup, budget)

            def whole() -> None:
                eraser.predict([image])  # the network's cost; its untrained output is replaced by ``prob``
                eraser.postprocess(image, prob)

            pipeline, pipeline_min = timings(whole, repeats, warmup, budget)
            rows.append({"preset": name, "params_M": params / 1e6, "size": f"{width}x{height}",
                         "forward_ms": 1000 * forward, "forward_min_ms": 1000 * forward_min,
                         "pipeline_ms": 1000 * pipeline, "pipeline_min_ms": 1000 * pipeline_min,
                         "fps": 1 / pipeline})
            print(rows[-1], flush=True)
    return rows


def cuda_rows(presets: list[str], batch: int, repeats: int, warmup: int, budget: float) -> list[dict]:
    rows = []
    for name in presets:
        model = FaceEraseUNet.from_preset(name).cuda().eval().to(memory_format=torch.channels_last)
        x = torch.rand(batch, 3, 480, 640, device="cuda").to(memory_format=torch.channels_last)

        def forward() -> None:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                model.predict_proba(x)

        seconds, _ = timings(forward, repeats, warmup, budget, sync=torch.cuda.synchronize)
        rows.append({"preset": name, "size": "640x480", "batch": batch, "images_per_s": batch / seconds})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--budget", type=float, default=15.0, help="seconds per measurement before stopping early")
    parser.add_argument("--batch", type=int, default=64, help="CUDA batch size")
    parser.add_argument("--no-cuda", action="store_true", help="skip the CUDA measurements")
    args = parser.parse_args()

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    started = time.strftime("%Y-%m-%d %H:%M")
    info = machine()
    rows = cpu_rows(args.presets, args.repeats, args.warmup, args.budget)
    live = next((r for r in rows if r["preset"] == "live" and r["size"] == "640x480"), None)
    load_end = round(os.getloadavg()[0], 2)
    data = {"date": started, "machine": info, "load_average_1min_at_end": load_end, "args": vars(args),
            "cpu": rows, "live_fps_640x480": live and live["fps"]}
    markdown = (f"# FaceErase speed on CPU ({info['cpu_cores_available']} cores, {info['torch_threads']} torch "
                f"threads, torch {info['torch']})\n\nMeasured {started}; median of up to {args.repeats} runs after "
                f"{args.warmup} warm-up runs, untrained weights. `pipeline_ms`: network + threshold, mask, "
                "regions and the default fill of four face-sized blobs (see benchmarks/README.md). "
                f"1-minute load average {info['load_average_1min']} at the start, {load_end} at the end: above "
                f"{info['cpu_cores_available']}, other processes shared the cores and the times are inflated.\n\n"
                + markdown_table(rows, ["preset", "params_M", "size", "forward_ms", "forward_min_ms", "pipeline_ms",
                                       "pipeline_min_ms", "fps"]))
    if live:
        verdict = "meets" if live["fps"] >= 25 else "misses"
        markdown += f"\n`live` at 640x480: {live['fps']:.1f} frames/s ({verdict} the 25 fps target).\n"
    write_results("speed_cpu", data, markdown)
    if torch.cuda.is_available() and not args.no_cuda:
        gpu = cuda_rows(args.presets, args.batch, args.repeats, args.warmup, args.budget)
        write_results("speed_cuda", {"date": started, "machine": machine(), "args": vars(args), "cuda": gpu},
                      f"# FaceErase forward speed on {torch.cuda.get_device_name(0)} (bf16, batch {args.batch})\n\n"
                      + markdown_table(gpu, ["preset", "size", "batch", "images_per_s"]))


if __name__ == "__main__":
    main()
