"""Atomic outputs: a file or folder appears whole under its name or not at all; stale temporaries are removed;
messages print control characters escaped."""

import os
import subprocess
import sys

import pytest

from faceerase.media.outputs import atomic_directory, atomic_output, new_file_mode, printable, remove_stale_temp_files


def test_atomic_output_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_output(target) as tmp:
        tmp.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new" and (target.stat().st_mode & 0o777) == new_file_mode()
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["out.txt"]


def test_atomic_directory_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "dataset"
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "part-1").write_text("rows")
        raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []  # no half folder, no temporary left
    umask = os.umask(0o027)
    try:
        with atomic_directory(target) as tmp:
            (tmp / "part-1").write_text("rows")
            assert not target.exists()
    finally:
        os.umask(umask)
    assert (target / "part-1").read_text() == "rows"
    assert (target.stat().st_mode & 0o777) == 0o750  # a new folder's mode under the umask, not mkdtemp's 0o700
    with pytest.raises(OSError), atomic_directory(target) as tmp:  # never replaces a folder with contents
        (tmp / "other").write_text("x")
    assert os.listdir(target) == ["part-1"] and sorted(os.listdir(tmp_path)) == ["dataset"]


def test_stale_temporary_folders_of_dead_runs_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale_dir = tmp_path / f".out.faceerase-{pid}-abcd1234.tmp"
    stale_dir.mkdir()
    (stale_dir / "data.arrow").write_text("half")
    stale_file = tmp_path / f".photo.jpg.faceerase-{pid}-abcd1234.tmp.jpg"
    stale_file.write_text("half")
    live = tmp_path / f".out.faceerase-{os.getpid()}-abcd1234.tmp"
    live.mkdir()
    mine = tmp_path / "my-folder"
    mine.mkdir()
    assert sorted(remove_stale_temp_files([tmp_path])) == sorted([stale_dir, stale_file])
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, "my-folder"])


def test_printable_escapes_every_control_and_line_break_and_nothing_else():
    assert printable("a\nb\rc\td\x1b[31me\x7ff\x85g\x9bh\u2028i\u2029j\u202ek\udcff") == (
        "a\\nb\\rc\\td\\x1b[31me\\x7ff\\x85g\\x9bh\\u2028i\\u2029j\\u202ek\\udcff")
    assert printable("/photos/été 2024/Zoë (1).jpg ✓") == "/photos/été 2024/Zoë (1).jpg ✓"
