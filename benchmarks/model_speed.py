"""CPU speed of a trained model folder with each backend (PyTorch eager, onnxruntime), network alone and end to end.

On the example photo resized to 640x480 and 1024x768, one image at a time, torch and onnxruntime both limited to
the available cores; each figure is the median of ``--repeats`` runs after one warm-up:

- ``network_ms``: ``FaceEraser.predict`` with one pass at the photo's own size;
- ``default_ms``: the model's default pipeline: ``predict`` at its ``inference.json`` input size and extra scales,
  then ``postprocess`` (auto threshold, mask growth, regions, the default fill) on the real output;
- ``live_ms`` (640x480 only): the webcam path of the app: one pass at the model's ``live_input_size``, then
  ``postprocess`` with blurring; ``live_fps`` = 1000 / ``live_ms`` (target: >= 25).

    python benchmarks/model_speed.py --model hub --name hub
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
from common import REPO, machine, markdown_table, write_results

from faceerase.erase.pipeline import FaceEraser
from faceerase.media.images import load_image
from faceerase.model.runners import BACKENDS

SIZES = ((640, 480), (1024, 768))
PHOTO = REPO / "faceerase" / "examples" / "astronaut.jpg"
COLUMNS = ["backend", "size", "network_ms", "default_ms", "live_ms", "live_fps"]


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="hub", help="model folder or Hub id")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--name", default="latest", help="results/model_speed_<name>.{json,md}")
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)
    started = time.strftime("%Y-%m-%d %H:%M")
    info = machine()
    from PIL import Image

    rows = []
    for backend in args.backends:
        default = FaceEraser(args.model, device="cpu", backend=backend)
        for width, height in SIZES:
            image = np.asarray(Image.fromarray(load_image(PHOTO)).resize((width, height), Image.BILINEAR))
            single = FaceEraser(default.model, device="cpu", backend=backend, input_size=max(width, height),
                                extra_scales=())
            row = {"backend": backend, "size": f"{width}x{height}",
                   "network_ms": median_ms(lambda: single.predict([image]), args.repeats),
                   "default_ms": median_ms(lambda: default.postprocess(image, default.predict([image])[0]),
                                           args.repeats)}
            if (width, height) == SIZES[0]:
                live = FaceEraser(default.model, device="cpu", backend=backend,
                                  input_size=default.settings.live_input_size, extra_scales=(), method="blur")
                row["live_ms"] = median_ms(lambda: live.postprocess(image, live.predict([image])[0]), args.repeats)
                row["live_fps"] = 1000 / row["live_ms"]
            rows.append(row)
            print(row, flush=True)
    settings = default.settings
    data = {"date": started, "machine": info, "load_average_1min_at_end": round(os.getloadavg()[0], 2),
            "model": args.model, "settings": {"input_size": settings.input_size,
                                              "extra_scales": list(settings.extra_scales),
                                              "live_input_size": settings.live_input_size}, "rows": rows}
    markdown = (f"# CPU speed of `{args.model}` by backend\n\nMeasured {started} on {cores} CPU cores "
                f"(load average at start {info['load_average_1min']}, at end {data['load_average_1min_at_end']}); "
                f"median of {args.repeats} runs, one image at a time. Default pipeline: input "
                f"{settings.input_size} px, extra scales {list(settings.extra_scales)}, default fill; live: "
                f"{settings.live_input_size} px, one pass, blur.\n\n" + markdown_table(rows, COLUMNS))
    write_results(f"model_speed_{args.name}", data, markdown)


if __name__ == "__main__":
    main()
