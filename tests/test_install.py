"""The installed package: importable from any working directory."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys

import pytest


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
