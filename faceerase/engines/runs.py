"""What every engine of the ``anonymize`` command shares: the accounting of a run (the audit report written by the
driver alone, the summary counting every input).

The local engine (:mod:`faceerase.cli`) and the Ray engine (:mod:`faceerase.engines.ray_engine`) differ only in where
:func:`faceerase.engines.files.process_job` runs; both build their erasers from one
:class:`~faceerase.erase.pipeline.EraserSpec` and pass the records through :func:`account_for`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from faceerase.engines.files import ANALYZED, ANONYMIZED, AuditReport, Plan, failure_record, skip_record


@dataclass
class RunSummary:
    """The counts of a run: every input is anonymized, analyzed (the method none), failed or skipped (counted by
    reason)."""

    anonymized: int = 0
    analyzed: int = 0
    failed: int = 0
    warned: int = 0
    regions: int = 0
    faces: int = 0
    kept: int = 0
    added: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        """Every input the run accounted for."""
        return self.anonymized + self.analyzed + self.failed + sum(self.skipped.values())

    def add(self, record: dict[str, Any], skip_reason: str | None = None) -> None:
        """Count the audit ``record``; a skip counts under ``skip_reason`` (default: the record's reason)."""
        if record["status"] in (ANONYMIZED, ANALYZED):
            self.anonymized += record["status"] == ANONYMIZED
            self.analyzed += record["status"] == ANALYZED
            self.warned += bool(record.get("warnings"))
            self.regions += record["n_regions"]
            self.faces += record["face_estimate"]
            edits = record.get("edits") or {}
            self.kept += len(edits.get("kept", ()))
            self.added += len(edits.get("added", ()))
        elif record["status"] == "failed":
            self.failed += 1
        else:
            self.skipped[skip_reason or record["reason"]] += 1

    def __str__(self) -> str:
        """One line: files anonymized (with warnings), analyzed (if any), failed and skipped (by reason), regions
        and the estimated faces in them (with the regions a review kept un-erased or added, if any), time."""
        skipped = sum(self.skipped.values())
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
        analyzed = f", {self.analyzed} {ANALYZED} (no image written)" if self.analyzed else ""
        return (f"{self.total} file{'s' * (self.total != 1)}: {self.anonymized} anonymized"
                f"{f' ({self.warned} with warnings)' * bool(self.warned)}{analyzed}, {self.failed} failed, "
                f"{skipped} skipped{f' ({reasons})' * bool(reasons)}; "
                f"{self.regions} region{'s' * (self.regions != 1)} "
                f"(about {self.faces} face{'s' * (self.faces != 1)}){self._review()}; {self.seconds:.1f} s")

    def _review(self) -> str:
        """The review's part of the line: the regions kept un-erased (not counted above) and added (counted)."""
        if not (self.kept or self.added):
            return ""
        return (f"; review: {self.kept} region{'s' * (self.kept != 1)} kept un-erased, "
                f"{self.added} added")


def account_for(todo: Plan, job_records: Iterable[dict[str, Any]], report: AuditReport | None = None,
                on_record: Callable[[dict[str, Any]], object] | None = None) -> RunSummary:
    """Account for every input of ``todo``: its problems (failed), its skips, then the records of its jobs as
    ``job_records`` yields them (in any order). Each record is counted, passed to ``on_record`` and written to
    the ``report``; returns the summary, its ``seconds`` the time spent here."""
    start = time.perf_counter()
    summary = RunSummary()
    planned = [*((failure_record(path, message), None) for path, message in todo.problems),
               *((skip_record(skip), skip.reason) for skip in todo.skips)]
    for record, skip_reason in chain(planned, ((record, None) for record in job_records)):
        summary.add(record, skip_reason)
        if on_record is not None:
            on_record(record)
        if report is not None:
            report.write(record)
    summary.seconds = time.perf_counter() - start
    return summary
