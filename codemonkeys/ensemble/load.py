"""Reading SWE-bench prediction files and evaluation labels (the only I/O of the package).

Predictions: rows with ``instance_id`` and ``model_patch`` (``model_name_or_path``
is optional: some published files misspell it), as JSONL, a JSON list, or a
JSON object keyed by instance id. Rows whose patch is missing or empty are
skipped and counted, since "no patch" is a normal outcome of a run; a row that
is not a prediction at all is a :class:`DataError` naming the file and line.

Labels, three formats:

* SWE-bench ``results.json``: lists of ids by key (``resolved``, ``no_logs``, ...);
* the SWE-bench harness report: ``resolved_ids``, ``unresolved_ids``, ``error_ids``, ...;
* our evaluation report: ``{instance_id: {"status": "resolved" | "unresolved" | "error", ...}}``.

An id a label file does not mention counts as unresolved.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..errors import DataError

# results.json keys that mean the harness could not grade the instance.
_RESULTS_ERROR_KEYS = ("no_logs", "install_fail", "reset_failed")
_REPORT_ERROR_KEYS = ("error_ids",)


class LabelStatus(StrEnum):
    """The graded outcome of one prediction."""

    RESOLVED = "resolved"
    UNRESOLVED = "unresolved"
    ERROR = "error"


class PredictionSet(BaseModel):
    """One submission's patches; only non-empty patches are kept."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    patches: dict[str, str]
    all_ids: frozenset[str]
    model_names: tuple[str, ...] = ()
    skipped_missing: int = 0
    skipped_empty: int = 0


class Labels(BaseModel):
    """Graded statuses of one submission; ``mentioned`` is every id the file names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    statuses: dict[str, LabelStatus]
    mentioned: frozenset[str]

    def status(self, instance_id: str) -> LabelStatus:
        return self.statuses.get(instance_id, LabelStatus.UNRESOLVED)

    @property
    def resolved(self) -> frozenset[str]:
        return frozenset(i for i, s in self.statuses.items() if s is LabelStatus.RESOLVED)


class EnsembleMember(BaseModel):
    """One submission of an ensemble: its patches and their grades."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    predictions: PredictionSet
    labels: Labels


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def _load_json(path: Path, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[str, Any]]:
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield f"{path}:{number}", json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: not valid JSON: {exc.msg}") from None


def _prediction_rows(path: Path) -> Iterator[tuple[str, Any]]:
    """``(location, row)`` pairs; the location names the line or entry for errors.

    ``.jsonl`` files are read line by line; anything else is tried as one JSON
    document first and read as JSONL when it is not one.
    """
    text = _read_text(path)
    if path.suffix == ".jsonl":
        yield from _jsonl_rows(path, text)
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if path.suffix == ".json":
            raise DataError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
        yield from _jsonl_rows(path, text)
        return
    if isinstance(data, list):
        yield from ((f"{path}: entry {n}", row) for n, row in enumerate(data, start=1))
    elif isinstance(data, dict) and "instance_id" in data:
        yield f"{path}:1", data  # a JSONL file with a single row
    elif isinstance(data, dict):
        for key, row in data.items():
            if isinstance(row, dict):
                if row.get("instance_id", key) != key:
                    raise DataError(
                        f"{path}: key {key!r} holds a row for instance {row['instance_id']!r}"
                    )
                row = {**row, "instance_id": key}
            yield f"{path}: key {key!r}", row
    else:
        raise DataError(
            f"{path}: expected a list or an object of predictions, got {type(data).__name__}"
        )


def load_predictions(path: str | Path) -> PredictionSet:
    """Read one prediction file (JSONL, JSON list, or JSON object by id)."""
    path = Path(path)
    patches: dict[str, str] = {}
    where: dict[str, str] = {}
    names: set[str] = set()
    missing = empty = 0
    for location, row in _prediction_rows(path):
        if not isinstance(row, dict):
            raise DataError(
                f"{location}: expected a JSON object with instance_id and model_patch, got {type(row).__name__}"
            )
        instance_id = row.get("instance_id")
        if not isinstance(instance_id, str) or not instance_id.strip():
            raise DataError(
                f"{location}: missing or invalid 'instance_id' (must be a non-empty string)"
            )
        if instance_id in where:
            raise DataError(
                f"{location}: instance {instance_id!r} already appeared at {where[instance_id]}"
            )
        where[instance_id] = location
        name = row.get("model_name_or_path")
        if name is not None and not isinstance(name, str):
            raise DataError(
                f"{location}: 'model_name_or_path' must be a string, got {type(name).__name__}"
            )
        if name:
            names.add(name)
        patch = row.get("model_patch")
        if patch is None:
            missing += 1
        elif not isinstance(patch, str):
            raise DataError(
                f"{location}: 'model_patch' must be a string or null, got {type(patch).__name__}"
            )
        elif not patch.strip():
            empty += 1
        else:
            patches[instance_id] = patch
    return PredictionSet(
        source=str(path),
        patches=patches,
        all_ids=frozenset(where),
        model_names=tuple(sorted(names)),
        skipped_missing=missing,
        skipped_empty=empty,
    )


def _id_list(path: Path, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DataError(f"{path}: key {key!r} must be a list of instance ids")
    return value


def labels_from_data(data: Any, source: str | Path) -> Labels:
    """Labels from already-parsed JSON; ``source`` only names it in errors."""
    path = Path(source)
    if not isinstance(data, dict):
        raise DataError(f"{path}: a label file must be a JSON object, got {type(data).__name__}")
    statuses: dict[str, LabelStatus] = {}
    mentioned: set[str] = set()
    if isinstance(data.get("resolved"), list) or isinstance(data.get("resolved_ids"), list):
        resolved_key = "resolved" if isinstance(data.get("resolved"), list) else "resolved_ids"
        error_keys = _RESULTS_ERROR_KEYS if resolved_key == "resolved" else _REPORT_ERROR_KEYS
        for key, value in data.items():
            if not isinstance(value, list):
                continue  # counts and other metadata in harness reports
            ids = _id_list(path, key, value)
            mentioned.update(ids)
            if key in error_keys:
                for instance_id in ids:
                    statuses.setdefault(instance_id, LabelStatus.ERROR)
        for instance_id in _id_list(path, resolved_key, data[resolved_key]):
            statuses[instance_id] = LabelStatus.RESOLVED
        return Labels(source=str(path), statuses=statuses, mentioned=frozenset(mentioned))
    for instance_id, entry in data.items():
        status = entry.get("status") if isinstance(entry, Mapping) else None
        if status not in {s.value for s in LabelStatus}:
            raise DataError(
                f'{path}: entry {instance_id!r} must be an object with "status" one of '
                f"{[s.value for s in LabelStatus]} (or the file must be a SWE-bench results.json "
                "with a 'resolved' list, or a harness report with 'resolved_ids')"
            )
        statuses[instance_id] = LabelStatus(status)
        mentioned.add(instance_id)
    return Labels(source=str(path), statuses=statuses, mentioned=frozenset(mentioned))


def load_labels(path: str | Path) -> Labels:
    """Read a label file in any of the three formats."""
    path = Path(path)
    return labels_from_data(_load_json(path, _read_text(path)), path)


def load_submission(directory: str | Path, name: str | None = None) -> EnsembleMember:
    """A leaderboard submission folder: ``all_preds.jsonl`` plus ``results.json``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"submission folder {directory} does not exist")
    return EnsembleMember(
        name=name or directory.name,
        predictions=load_predictions(directory / "all_preds.jsonl"),
        labels=load_labels(directory / "results.json"),
    )
