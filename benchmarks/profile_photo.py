"""Where the time of erasing photos goes: cProfile over the real CLI on WIDER FACE val photos.

Runs ``faceerase anonymize <folder> -o <out>`` in this process under :mod:`cProfile` on a folder of ``--images``
val photos (every k-th image, so crowds and portraits are both in), then groups the profile into the stages of
the path (decode, network, threshold, mask clean-up and regions, fill, encode and metadata) by the module and
function each call belongs to, and lists the heaviest functions. Start-up (imports, model load) is timed apart.

    python benchmarks/profile_photo.py                   # 60 images -> results/profile_photo.{md,json}
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import tempfile
import time
from pathlib import Path

from common import WIDERFACE, machine, write_results

# The stages of the path and the package functions whose cumulative time is each stage's (none nests in another).
STAGES: dict[str, tuple[str, ...]] = {
    "decode": ("images.py:_load",),
    "resize, batching, resize back (predict minus network)": ("pipeline.py:predict",),
    "network (onnxruntime or torch)": ("pipeline.py:_network",),
    "threshold": ("thresholds.py:compute_threshold",),
    "mask clean-up and shape": ("masks.py:refine_mask", "masks.py:shape_mask"),
    "regions": ("masks.py:find_regions",),
    "fill": ("fill.py:anonymize",),
    "encode and metadata": ("images.py:write_image", "metadata.py:allowed_exif"),
}


def cumulative(stats: pstats.Stats, name: str) -> float | None:
    """Cumulative seconds of the package function ``file.py:function`` (None when it was never called)."""
    file, function = name.split(":")
    times = [cum for (filename, _, fn), (_, _, _, cum, _) in stats.stats.items()  # type: ignore[attr-defined]
             if fn == function and filename.endswith("/" + file)]
    return sum(times) if times else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=WIDERFACE, help="WIDER FACE folder (official layout)")
    parser.add_argument("--images", type=int, default=60, help="number of val photos")
    parser.add_argument("--model", default="hub", help="model folder")
    parser.add_argument("--name", default="photo", help="results/profile_<name>.{md,json}")
    args = parser.parse_args()

    photos = sorted((args.root / "WIDER_val" / "images").rglob("*.jpg"))
    photos = photos[:: max(1, len(photos) // args.images)][: args.images]
    started = time.strftime("%Y-%m-%d %H:%M")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for photo in photos:
            shutil.copy(photo, folder / photo.name)
        t0 = time.perf_counter()
        from faceerase import cli  # the CLI's own imports are part of its start-up
        startup_imports = time.perf_counter() - t0
        profile = cProfile.Profile()
        t0 = time.perf_counter()
        profile.enable()
        code = cli.main(["anonymize", str(folder), "-o", str(Path(tmp) / "out"), "--model", args.model, "--quiet"])
        profile.disable()
        wall = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"faceerase anonymize failed with exit code {code}")

    stats = pstats.Stats(profile)
    per_stage: dict[str, float] = {}
    missing = []
    for stage, names in STAGES.items():
        found = [t for t in (cumulative(stats, n) for n in names) if t is not None]
        if not found:
            missing.append(stage)
        per_stage[stage] = sum(found)
    per_stage["resize, batching, resize back (predict minus network)"] -= per_stage["network (onnxruntime or torch)"]
    per_stage["everything else (model load, planning, report, glue)"] = wall - sum(per_stage.values())
    total = wall
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(25)
    top = "\n".join(line for line in text.getvalue().splitlines() if line.strip())[-6000:]
    rows = sorted(per_stage.items(), key=lambda kv: -kv[1])
    data = {"date": started, "machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
            "n_images": len(photos), "wall_s": wall, "startup_imports_s": startup_imports,
            "stages_s": dict(rows), "stages_not_found": missing}
    markdown = (f"# Profile of `faceerase anonymize` on {len(photos)} WIDER FACE val photos\n\n"
                f"Measured {started} on {data['machine']['cpu_cores_available']} CPU cores (load "
                f"{data['machine']['load_average_1min']}); `python benchmarks/profile_photo.py --images "
                f"{args.images}`. Wall time {wall:.1f} s ({wall / len(photos):.2f} s per photo, model load "
                f"included); CLI imports before it {startup_imports:.1f} s. Time per stage, from the cumulative "
                "time of the package functions that do it (cProfile adds overhead to Python calls, not to native "
                "ones)" + (f"; not found in this version: {', '.join(missing)}" if missing else "") + ":\n\n| stage | s | share |\n|---|---|---|\n"
                + "".join(f"| {stage} | {s:.2f} | {100 * s / total:.1f}% |\n" for stage, s in rows)
                + "\nHeaviest functions by own time:\n\n```\n" + top + "\n```\n")
    write_results(f"profile_{args.name}", data, markdown)


if __name__ == "__main__":
    main()
