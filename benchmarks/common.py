"""Helpers shared by the benchmark scripts: machine description, result files, Markdown tables."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
if str(REPO) not in sys.path:  # run from a checkout without ``pip install -e .``
    sys.path.insert(0, str(REPO))

from faceerase.media.outputs import markdown_table  # noqa: E402, F401  (the scripts' tables, as the package writes)
from faceerase.training.widerface import default_widerface_root  # noqa: E402

WIDERFACE = default_widerface_root()  # $FACEERASE_WIDERFACE, else ../shared/widerface


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "load_average_1min": round(os.getloadavg()[0], 2),  # other processes competing for the cores
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def write_results(stem: str, data: dict[str, Any], markdown: str) -> None:
    """Write ``results/<stem>.json`` and ``results/<stem>.md`` and print the Markdown."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown)
    print(markdown)
