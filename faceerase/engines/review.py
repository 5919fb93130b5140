"""Reviews recorded elsewhere (the app, the web page, an edited report), applied in bulk: ``faceerase anonymize
--regions EDITS.jsonl``.

An edits file is JSON Lines of audit records (:func:`faceerase.engines.files.image_findings`), or of just
``{"input": ..., "edits": {...}}``: the app's and the page's downloaded record is one line, and a whole report of an
earlier run is a valid edits file (its lines without edits are passed over). Each line with edits must name one input
of the run; nothing is guessed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from faceerase.erase.edits import Edits


class EditsFileError(ValueError):
    """An edits file that cannot be read, or whose edits do not match the run's inputs (with the line)."""


def read_edits(path: Path) -> list[tuple[int, str, Edits]]:
    """The (line number, input, edits) of each line of ``path`` that has edits; an :class:`EditsFileError` names
    the line that is not a record, lacks its ``input`` or holds malformed edits."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise EditsFileError(f"cannot read the edits file {path}: {error}") from None
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise EditsFileError(f"{where} is not JSON: {error}") from None
        if not isinstance(record, dict):
            raise EditsFileError(f"{where} is not a JSON object")
        if "edits" not in record:
            continue  # a report's line of a video, a failed or skipped file, or a file with no review
        if not isinstance(record.get("input"), str) or not record["input"]:
            raise EditsFileError(f"{where} has edits but no 'input' naming its image")
        try:
            edits = Edits.from_record(record)
        except ValueError as error:
            raise EditsFileError(f"{where}: {error}") from None
        if edits:
            entries.append((number, record["input"], edits))
    return entries


def match_edits(entries: Sequence[tuple[int, str, Edits]], sources: Sequence[Path],
                path: Path | str = "the edits file") -> dict[str, Edits]:
    """The edits of each input of the run, keyed by ``str(source)``.

    An entry's ``input`` names the file as the report does (the path given to the CLI, relative to the working
    directory, or absolute), or by its file name alone when no input is at that path and exactly one input has
    that name (the app and the page record the upload's name). An :class:`EditsFileError` names an entry that
    matches no input, or several, and an input with edits on two lines.
    """
    by_path = {_resolved(source): source for source in sources}
    by_name: dict[str, list[Path]] = {}
    for source in sources:
        by_name.setdefault(source.name, []).append(source)
    matched: dict[str, Edits] = {}
    line_of: dict[str, int] = {}
    for number, name, edits in entries:
        where = f"{path}, line {number}"
        source = by_path.get(_resolved(Path(name)))
        if source is None:
            named = by_name.get(Path(name).name, [])
            if len(named) > 1:
                raise EditsFileError(f"{where}: {len(named)} inputs are named {Path(name).name}; give the path of "
                                     f"{name!r} as this run's report names it")
            if not named:
                raise EditsFileError(f"{where}: no input of this run is {name!r}")
            source = named[0]
        key = str(source)
        if key in matched:
            raise EditsFileError(f"{where}: {key} already has edits, on line {line_of[key]}")
        matched[key], line_of[key] = edits, number
    return matched


def _resolved(path: Path) -> Path:
    return path.expanduser().resolve(strict=False)
