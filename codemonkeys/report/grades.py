"""Grades of every candidate, which coverage needs (the selection's grades alone cannot give it).

Grading is done by ``codemonkeys evaluate`` (Docker images, eval scripts); this
module only moves patches out and grades back in:

1. ``export_candidate_files`` writes the run's distinct patches as ordinary
   SWE-bench prediction files, ``candidates-<j>.jsonl`` holding the j-th
   distinct patch of every instance (identical patches of one instance are
   graded once). Each row also names its ``patch_hash`` and ``candidate_ids``.
   Exporting again is idempotent; it refuses to change a file that has a
   report beside it, since reports are keyed by instance id only.
2. ``codemonkeys evaluate DIR/candidates-<j>.jsonl --dataset ...`` grades each
   file and writes ``candidates-<j>.report.json`` beside it.
3. ``load_candidate_grades(DIR)`` reads each file with its report back, keyed
   by (instance id, patch hash), so the grade applies to every candidate with
   that patch. A JSON file ``{candidate_id: status | {"status": status}}`` made
   any other way is read too.

A candidate whose file was not graded, or whose report does not mention its
instance, has no grade: the report leaves its instance out of coverage rather
than guess.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..ensemble.load import LabelStatus, load_labels
from ..errors import DataError, UserError

PREFIX = "candidates-"
MODEL_NAME = "codemonkeys-candidates"


class CandidateSource(Protocol):
    def instance_states(self) -> list[dict[str, Any]]: ...

    def candidates(self, instance_id: str) -> list[dict[str, Any]]: ...


@dataclass
class CandidateGrades:
    """Grades by (instance id, patch hash) and by candidate id; the latter wins."""

    by_patch: dict[tuple[str, str], LabelStatus] = field(default_factory=dict)
    by_candidate: dict[str, LabelStatus] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def status(self, candidate: Mapping[str, Any]) -> LabelStatus | None:
        """The grade of a stored candidate row, ``None`` when it was not graded; an empty patch resolves nothing."""
        if not candidate["patch"].strip():
            return LabelStatus.UNRESOLVED
        found = self.by_candidate.get(candidate["candidate_id"])
        if found is not None:
            return found
        return self.by_patch.get((candidate["instance_id"], candidate["patch_hash"]))

    def __len__(self) -> int:
        return len(self.by_patch) + len(self.by_candidate)


def distinct_patches(candidates: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, list[str]]]:
    """``(patch_hash, patch, candidate_ids)`` per distinct non-empty patch, in candidate-id order."""
    groups: dict[str, tuple[str, list[str]]] = {}
    for row in sorted(candidates, key=lambda r: r["candidate_id"]):
        if not row["patch"].strip():
            continue
        groups.setdefault(row["patch_hash"], (row["patch"], []))[1].append(row["candidate_id"])
    return [(key, patch, ids) for key, (patch, ids) in groups.items()]


def export_candidate_files(store: CandidateSource, directory: Path) -> list[Path]:
    """Write ``candidates-<j>.jsonl`` files (see the module docstring); returns them in order."""
    slots: list[list[dict[str, Any]]] = []
    for state in store.instance_states():
        iid = state["instance_id"]
        for j, (key, patch, ids) in enumerate(distinct_patches(store.candidates(iid))):
            while len(slots) <= j:
                slots.append([])
            slots[j].append({
                "instance_id": iid, "model_name_or_path": MODEL_NAME, "model_patch": patch,
                "patch_hash": key, "candidate_ids": ids,
            })
    directory.mkdir(parents=True, exist_ok=True)
    texts = [(directory / f"{PREFIX}{j}.jsonl", "".join(json.dumps(row) + "\n" for row in rows)) for j, rows in enumerate(slots)]
    stale = [path for path, text in texts if report_path(path).exists() and _read(path) != text]
    if stale:
        # A report is keyed by instance id: beside a changed file it would grade the wrong patches.
        raise UserError(
            f"{directory} holds graded candidate files that differ from this export ({stale[0].name}); "
            "export to a new directory"
        )
    for path, text in texts:
        _write_atomic(path, text)
    return [path for path, _ in texts]


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def report_path(predictions: Path) -> Path:
    """Where ``codemonkeys evaluate`` writes the report of a predictions file by default."""
    return predictions.with_name(predictions.stem + ".report.json")


def load_candidate_grades(path: Path) -> CandidateGrades:
    """Grades from an export directory with its evaluation reports, or from a candidate-id JSON file."""
    if path.is_dir():
        return _from_directory(path)
    if path.is_file():
        return _from_mapping(path)
    raise DataError(f"candidate labels {path} is neither a directory of graded candidate files nor a JSON file")


def _from_directory(directory: Path) -> CandidateGrades:
    grades = CandidateGrades()
    files = sorted(directory.glob(f"{PREFIX}*.jsonl"))
    if not files:
        raise DataError(f"{directory} has no {PREFIX}*.jsonl files (write them with `codemonkeys report RUN --export-candidates {directory}`)")
    for predictions in files:
        report = report_path(predictions)
        if not report.is_file():
            continue
        labels = load_labels(report)
        grades.sources.append(str(report))
        for number, line in enumerate(predictions.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                iid, key = row["instance_id"], row["patch_hash"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataError(f"{predictions}:{number}: not a candidate row ({exc})") from None
            if iid in labels.mentioned:
                grades.by_patch[(iid, key)] = labels.status(iid)
    if not grades.sources:
        raise DataError(
            f"none of the {len(files)} candidate file(s) in {directory} has a report beside it; "
            f"run `codemonkeys evaluate {files[0]} --dataset ...` on each"
        )
    return grades


def _from_mapping(path: Path) -> CandidateGrades:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read candidate labels {path}: {exc}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: candidate labels must be a JSON object {{candidate_id: status}}")
    grades = CandidateGrades(sources=[str(path)])
    allowed = {s.value for s in LabelStatus}
    for candidate_id, entry in data.items():
        status = entry.get("status") if isinstance(entry, Mapping) else entry
        if status not in allowed:
            raise DataError(f"{path}: candidate {candidate_id!r} must have a status in {sorted(allowed)}, got {status!r}")
        grades.by_candidate[candidate_id] = LabelStatus(status)
    return grades
