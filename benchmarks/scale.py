"""Images per second of the three ways to anonymize many images, on the same images and machine.

- ``cli``: ``faceerase anonymize IN -o OUT``, one process, one file after the other;
- ``datasets``: ``faceerase.anonymize_dataset`` on the folder loaded as an ``imagefolder`` dataset, in the calling
  process (``num_proc`` 1) and with ``num_proc=2`` worker processes, then ``save_to_disk``;
- ``ray``: ``faceerase anonymize IN -o OUT --engine ray --actors 2``: a local Ray with 2 CPU actors.

Each engine runs in a fresh process with the embedded model and its defaults (onnxruntime on the CPU). ``wall_s``
is the whole command (imports, model load, Ray start-up); ``work_s`` the anonymizing alone (the summary's time for
the CLI engines; ``anonymize_dataset`` plus ``save_to_disk`` for datasets); images/s are taken from ``work_s``.
Each figure is the median of ``--repeats`` rounds (each round runs every engine once, in turn). The CLI and Ray
outputs are compared byte for byte.

    python benchmarks/scale.py --count 200 --repeats 3
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import WIDERFACE, machine, markdown_table, write_results

COLUMNS = ["engine", "workers", "images", "wall_s", "work_s", "images_per_s", "failed"]
DATASETS_RUN = """
import sys, time
import datasets
from faceerase.engines.hf_datasets import anonymize_dataset, load_source, save_result, status_counts
datasets.disable_caching()  # no map result of an earlier run is reused
source = load_source(sys.argv[1], cache_dir=sys.argv[4])  # the image folder's Arrow copy: in the scratch folder
start = time.perf_counter()
result = anonymize_dataset(source, num_proc=int(sys.argv[3]) or None)
save_result(result, sys.argv[2])
print(f"WORK {time.perf_counter() - start:.3f} FAILED {status_counts(result)['failed']}")
"""


def run(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, done.stdout


def cli_row(engine: str, inputs: Path, out: Path, extra: list[str], workers: int, count: int) -> dict:
    faceerase = str(Path(sys.executable).with_name("faceerase"))
    wall, stdout = run([faceerase, "anonymize", str(inputs), "-o", str(out), *extra])
    summary = stdout.strip().splitlines()[-1]
    work = float(re.search(r"; ([\d.]+) s$", summary).group(1))
    failed = int(re.search(r"(\d+) failed", summary).group(1))
    return {"engine": engine, "workers": workers, "images": count, "wall_s": round(wall, 1), "work_s": round(work, 1),
            "images_per_s": round(count / work, 2), "failed": failed}


def datasets_row(inputs: Path, out: Path, num_proc: int, count: int) -> dict:
    scratch = out.with_name(out.name + "-cache")
    wall, stdout = run([sys.executable, "-c", DATASETS_RUN, str(inputs), str(out), str(num_proc), str(scratch)])
    found = re.search(r"WORK ([\d.]+) FAILED (\d+)", stdout)
    work = float(found.group(1))
    return {"engine": "datasets", "workers": num_proc or 1, "images": count, "wall_s": round(wall, 1),
            "work_s": round(work, 1), "images_per_s": round(count / work, 2), "failed": int(found.group(2))}


def median_row(runs: list[dict]) -> dict:
    """One engine's row with the median times over its rounds."""
    row = dict(runs[0])
    for key in ("wall_s", "work_s"):
        row[key] = round(statistics.median(run[key] for run in runs), 1)
    row["images_per_s"] = round(row["images"] / row["work_s"], 2)
    row["failed"] = max(run["failed"] for run in runs)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=WIDERFACE, help="WIDER FACE root (default: ../shared)")
    parser.add_argument("--split", default="val", choices=("train", "val"))
    parser.add_argument("--count", type=int, default=200, help="images (the first COUNT in name order)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; each figure is their median")
    parser.add_argument("--name", default="scale", help="results/<name>.json and .md")
    args = parser.parse_args()

    images = sorted((args.data / f"WIDER_{args.split}" / "images").rglob("*.jpg"))[:args.count]
    if len(images) < args.count:
        sys.exit(f"only {len(images)} images under {args.data}; need {args.count}")
    info = machine()  # before the runs: the load average says what else was running
    rounds = []
    with tempfile.TemporaryDirectory(prefix="faceerase-scale-") as tmp:
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        for path in images:
            shutil.copyfile(path, inputs / path.name)
        identical = True
        for r in range(args.repeats):
            out = Path(tmp) / f"round{r}"
            rounds.append([cli_row("cli", inputs, out / "cli", [], 1, len(images)),
                           datasets_row(inputs, out / "ds1", 0, len(images)),
                           datasets_row(inputs, out / "ds2", 2, len(images)),
                           cli_row("ray", inputs, out / "ray", ["--engine", "ray", "--actors", "2"], 2, len(images))])
            same, _, _ = filecmp.cmpfiles(out / "cli", out / "ray", [p.name for p in images], shallow=False)
            identical = identical and len(same) == len(images)
            shutil.rmtree(out)
    rows = [median_row([round_[i] for round_ in rounds]) for i in range(len(rounds[0]))]
    markdown = (f"# Anonymizing {len(images)} WIDER FACE {args.split} images: CLI, datasets, Ray\n\n"
                f"`python benchmarks/scale.py --count {args.count} --repeats {args.repeats}` on "
                f"{info['cpu_cores_available']} CPU cores (load average before: {info['load_average_1min']}); "
                "embedded model, defaults (onnxruntime). `wall_s`: the whole command; `work_s`: the anonymizing "
                f"alone; images/s from `work_s`; medians of {args.repeats} rounds. "
                f"CLI and Ray outputs byte-identical: {'yes' if identical else 'NO'}.\n\n"
                + markdown_table(rows, COLUMNS))
    write_results(args.name, {"machine": info, "count": len(images), "split": args.split, "repeats": args.repeats,
                              "cli_ray_identical": identical, "rows": rows, "rounds": rounds}, markdown)


if __name__ == "__main__":
    main()
