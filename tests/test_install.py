"""The installed package: importable from any working directory; a wheel that carries the default model and erases
offline outside the checkout; a normal run that prints its summary and nothing else."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from faceerase.model.loading import DEFAULT_MODEL_DIR
from fixtures_app import REPO

ASTRONAUT = REPO / "faceerase" / "examples" / "astronaut.jpg"
ASTRONAUT_FACE = (slice(60, 165), slice(175, 268))  # rows, columns of Eileen Collins' face (test_shipped_model)
MODEL_FILES = ("config.json", "model.safetensors", "inference.json", "model.onnx", "README.md", "LICENSE")
SUMMARY = re.compile(r"1 file: 1 anonymized, 0 failed, 0 skipped; 1 region \(about 1 face\); [\d.]+ s\n")

# Run by the wheel's interpreter: which package and model folder it uses, and one erase per backend.
ERASE = """
import json, sys
import numpy as np
import faceerase
from faceerase import FaceEraser
from faceerase.model.loading import DEFAULT_MODEL_DIR
masks = {}
for backend in ("onnx", "torch"):
    result = FaceEraser(backend=backend)(sys.argv[1])
    masks[backend], masks[backend + "_anonymized"] = result.mask, result.anonymized
np.savez(sys.argv[2], **masks)
print(json.dumps({"package": faceerase.__file__, "model": str(DEFAULT_MODEL_DIR)}))
"""


def _offline_env(**extra: str) -> dict[str, str]:
    """This environment without PYTHONPATH, offline for the Hugging Face Hub."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return {**env, "HF_HUB_OFFLINE": "1", **extra}


def _pip(*args: str | Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "-q", *map(str, args)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr


def test_the_package_wins_over_a_folder_named_faceerase_in_the_working_directory(tmp_path):
    """From the parent of a checkout named ``faceerase`` (no ``__init__.py`` at its root) the folder is a namespace
    package candidate; the installed package must still be the one imported (scripts/install.sh's compat mode)."""
    try:
        importlib.metadata.distribution("faceerase")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("faceerase is not installed in this interpreter (run scripts/install.sh)")
    (tmp_path / "faceerase").mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", "from faceerase import FaceEraser"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_a_wheel_carries_the_default_model_and_erases_offline_outside_the_checkout(tmp_path):
    """The sdist, then the wheel built from it (as ``python -m build`` does), installed into a folder of its own: run
    from another working directory with the Hub offline, ``FaceEraser()`` finds the model in the wheel, not in the
    checkout nor on the Hub, and erases the astronaut's face exactly as the checkout does."""
    pytest.importorskip("setuptools", reason="the build backend (requirements.txt) is not installed")
    dist, target, work = tmp_path / "dist", tmp_path / "site", tmp_path / "work"
    work.mkdir()
    built = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                            "print(build_meta.build_sdist(sys.argv[1]))", str(dist)],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    sdist = dist / built.stdout.split()[-1]
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", dist, sdist)
    [wheel_file] = dist.glob("faceerase-*.whl")
    _pip("install", "--no-deps", "--no-index", "--target", target, wheel_file)
    packaged = target / "faceerase" / "default_model"
    for name in MODEL_FILES:  # the checkout's hub/, byte for byte
        assert (packaged / name).read_bytes() == (REPO / "hub" / name).read_bytes(), name

    run = subprocess.run([sys.executable, "-c", ERASE, str(ASTRONAUT), str(tmp_path / "masks.npz")], cwd=work,
                         env=_offline_env(PYTHONPATH=str(target)), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # no "Loading weights from local directory", no warning
    used = json.loads(run.stdout)
    assert Path(used["package"]).is_relative_to(target) and Path(used["model"]) == packaged

    from faceerase import FaceEraser

    wheel = np.load(tmp_path / "masks.npz")
    for backend in ("onnx", "torch"):
        checkout = FaceEraser(DEFAULT_MODEL_DIR, backend=backend)(ASTRONAUT)
        assert np.array_equal(wheel[backend], checkout.mask) and wheel[backend][ASTRONAUT_FACE].mean() > 0.5
        assert np.array_equal(wheel[backend + "_anonymized"], checkout.anonymized)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_a_normal_run_prints_its_summary_and_nothing_else(tmp_path, backend):
    """``faceerase anonymize`` on the default model: the summary on stdout and nothing on stderr (with the torch
    backend, huggingface_hub's loader would print "Loading weights from local directory")."""
    done = subprocess.run([sys.executable, "-m", "faceerase.cli", "anonymize", str(ASTRONAUT), "-o", "out",
                           "--backend", backend], cwd=tmp_path, env=_offline_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert SUMMARY.fullmatch(done.stdout), done.stdout
    assert done.stderr == ""
    assert (tmp_path / "out" / "astronaut.jpg").is_file()
