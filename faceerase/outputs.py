"""Output files written atomically: this tool's temporary names, modes from the umask, stale temp clean-up.

A temporary file is named ``.<output name>.faceerase-<pid>-<random>.tmp<output suffix>`` next to its
output; the pid lets a later run tell the leftovers of an interrupted run from the files of a live one.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

_TEMP_NAME = re.compile(r"^\..+\.faceerase-(?P<pid>\d+)-[a-z0-9_]{8}\.tmp(\.[^.]*)?$")


def temp_path(destination: Path) -> Path:
    """Create an empty temporary file next to ``destination`` (same suffix) and return its path."""
    fd, name = tempfile.mkstemp(prefix=f".{destination.name}.faceerase-{os.getpid()}-",
                                suffix=f".tmp{destination.suffix}", dir=destination.parent)
    os.close(fd)
    return Path(name)


def new_file_mode() -> int:
    """The mode a new file gets under the current umask (``0o666 & ~umask``)."""
    umask = os.umask(0o022)  # the only portable way to read the umask is to set it
    os.umask(umask)
    return 0o666 & ~umask


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
    """Delete this tool's temporary files in ``folders`` (not recursively) whose run is no longer alive;
    return the deleted paths. Other files, and temporary files of live runs, are left alone."""
    removed = []
    for folder in folders:
        try:
            entries = list(folder.iterdir())
        except OSError:  # not created yet, or unreadable: nothing of ours can be there
            continue
        for path in entries:
            match = _TEMP_NAME.match(path.name)
            if match and _process_is_gone(int(match["pid"])) and path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed
