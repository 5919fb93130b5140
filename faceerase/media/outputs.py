"""Outputs written atomically: this tool's temporary names, modes from the umask, stale temp clean-up; messages
safe to print (:func:`printable`); Markdown tables of results (:func:`markdown_table`).

A temporary file is named ``.<output name>.faceerase-<pid>-<random>.tmp<output suffix>`` next to its
output (a temporary folder the same, without the suffix); the pid lets a later run tell the leftovers of an
interrupted run from those of a live one.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_TEMP_NAME = re.compile(r"^\..+\.faceerase-(?P<pid>\d+)-[a-z0-9_]{8}\.tmp(\.[^.]*)?$")
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # C0/C1 controls, format, surrogates, line/paragraph ends


def printable(message: str) -> str:
    """``message`` with its control characters escaped (``\\n``, ``\\r``, ``\\x1b``, ``\\u2028``...), as the JSON
    report escapes them: a file name in a message cannot start a line of its own (a forged summary), move the
    cursor or recolour the terminal. Every message naming a path or other user-provided text goes through it."""
    return "".join(char.encode("unicode_escape").decode("ascii") if unicodedata.category(char) in _UNPRINTABLE
                   else char for char in message)


def temp_path(destination: Path) -> Path:
    """Create an empty temporary file next to ``destination`` (same suffix) and return its path."""
    fd, name = tempfile.mkstemp(prefix=f".{destination.name}.faceerase-{os.getpid()}-",
                                suffix=f".tmp{destination.suffix}", dir=destination.parent)
    os.close(fd)
    return Path(name)


def _umask() -> int:
    umask = os.umask(0o022)  # the only portable way to read the umask is to set it
    os.umask(umask)
    return umask


def new_file_mode() -> int:
    """The mode a new file gets under the current umask (``0o666 & ~umask``)."""
    return 0o666 & ~_umask()


@contextmanager
def atomic_output(destination: Path) -> Iterator[Path]:
    """Yield a temporary path to write ``destination`` to; when the block succeeds the file gets the
    umask's mode and replaces ``destination``, otherwise it is removed.

    An :class:`OSError` is re-raised with a one-line message naming ``destination``, never the temporary file.
    """
    try:
        tmp = temp_path(destination)
        try:
            yield tmp
            os.chmod(tmp, new_file_mode())
            os.replace(tmp, destination)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as error:
        raise OSError(f"cannot write {destination}: {error.strerror or error}") from None


@contextmanager
def atomic_directory(destination: Path) -> Iterator[Path]:
    """Yield a new temporary folder to fill in place of the folder ``destination``, which must not exist or be
    empty; when the block succeeds the folder takes its name, otherwise it is removed with its contents."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_folder(destination)
    try:
        yield tmp
        if destination.is_dir() and not any(destination.iterdir()):
            destination.rmdir()
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp made it private; a new folder's mode under the umask
        os.rename(tmp, destination)  # refuses an existing non-empty folder rather than replacing it
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _temp_folder(destination: Path) -> Path:
    """Create an empty temporary folder next to ``destination`` and return its path."""
    return Path(tempfile.mkdtemp(prefix=f".{destination.name}.faceerase-{os.getpid()}-", suffix=".tmp",
                                 dir=destination.parent))


def check_folder_can_be_created(destination: Path) -> None:
    """Make sure :func:`atomic_directory` can create ``destination`` later (before hours of work for it): its
    parent is created, and a temporary folder is made there and removed.

    Raises:
        OSError: with a one-line message naming the folder that cannot be created (``destination`` or a parent).
    """
    folder = destination.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        folder = destination
        _temp_folder(destination).rmdir()
    except OSError as error:
        raise OSError(f"cannot create the folder {folder}: {error.strerror or error}") from None


def _process_is_gone(pid: int) -> bool:
    if os.name != "posix" or pid == os.getpid():
        return False  # signal 0 only probes on POSIX; never treat our own files as stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive but owned by another user
    return False


def remove_stale_temp_files(folders: Iterable[Path]) -> list[Path]:
    """Delete this tool's temporary files and folders in ``folders`` (not recursively) whose run is no longer
    alive; return the deleted paths. Other files, and temporary files of live runs, are left alone."""
    removed = []
    for folder in folders:
        try:
            entries = list(folder.iterdir())
        except OSError:  # not created yet, or unreadable: nothing of ours can be there
            continue
        for path in entries:
            match = _TEMP_NAME.match(path.name)
            if not match or path.is_symlink() or not _process_is_gone(int(match["pid"])):
                continue
            if path.is_file():
                path.unlink(missing_ok=True)
            elif path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                continue
            removed.append(path)
    return removed


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A GitHub Markdown table of ``rows`` restricted to ``columns`` (missing cells shown as ``–``, floats with
    three decimals)."""
    def cell(value: Any) -> str:
        if value is None:
            return "–"
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"
