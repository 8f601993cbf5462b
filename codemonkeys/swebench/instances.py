"""SWE-bench instances: the typed row, and loaders from the hub or a local file.

Rows come from the Hugging Face hub (``princeton-nlp/SWE-bench_Verified``) or
from a JSONL/JSON/parquet file with the same fields. ``FAIL_TO_PASS`` and
``PASS_TO_PASS`` are JSON strings on the hub and lists in some copies; both
are accepted. Bad rows are reported by instance id, all at once, so a broken
file is fixed in one pass.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ..errors import DataError

DEFAULT_SPLIT = "test"
# Short names people type for the hub datasets.
DATASET_ALIASES = {
    "verified": "princeton-nlp/SWE-bench_Verified",
    "lite": "princeton-nlp/SWE-bench_Lite",
    "full": "princeton-nlp/SWE-bench",
}


class Instance(BaseModel):
    """One SWE-bench task: an issue, the repo state it was filed against, and its tests."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    instance_id: str
    repo: str
    base_commit: str
    version: str
    environment_setup_commit: str
    problem_statement: str
    patch: str = ""
    test_patch: str
    hints_text: str = ""
    created_at: str = ""
    FAIL_TO_PASS: list[str]
    PASS_TO_PASS: list[str]

    @field_validator("FAIL_TO_PASS", "PASS_TO_PASS", mode="before")
    @classmethod
    def _tests_from_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON list of test names: {exc.msg}") from None
        return value

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        # Versions are strings ("3.0", "0.20"); a number here already lost digits.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(f"must be a string such as '3.0', got the number {value!r}")
        return value

    @field_validator("repo")
    @classmethod
    def _owner_slash_name(cls, value: str) -> str:
        owner, sep, name = value.partition("/")
        if not sep or not owner or not name or "/" in name:
            raise ValueError(f"must look like owner/name, got {value!r}")
        return value

    @field_validator("base_commit", "environment_setup_commit")
    @classmethod
    def _commit(cls, value: str) -> str:
        if not (7 <= len(value) <= 40) or any(c not in "0123456789abcdef" for c in value.lower()):
            raise ValueError(f"is not a git commit hash: {value!r}")
        return value

    @property
    def repo_slug(self) -> str:
        """``django__django``: the repo as SWE-bench names it in ids and mirror folders."""
        return self.repo.replace("/", "__")


def _row_label(row: Mapping[str, Any], index: int) -> str:
    instance_id = row.get("instance_id")
    return repr(instance_id) if isinstance(instance_id, str) and instance_id else f"row {index + 1} (no instance_id)"


def parse_instances(rows: Iterable[Mapping[str, Any]], source: str) -> list[Instance]:
    """Validate rows into instances; every bad row is named in one :class:`DataError`."""
    instances: list[Instance] = []
    problems: list[str] = []
    seen: set[str] = set()
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            problems.append(f"row {index + 1}: not an object")
            continue
        try:
            instance = Instance.model_validate(dict(row))
        except ValidationError as exc:
            fields = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'row'}: "
                f"{'missing' if err['type'] == 'missing' else err['msg']}"
                for err in exc.errors()
            )
            problems.append(f"{_row_label(row, index)}: {fields}")
            continue
        if instance.instance_id in seen:
            problems.append(f"{instance.instance_id!r}: duplicate instance id")
            continue
        seen.add(instance.instance_id)
        instances.append(instance)
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise DataError(f"{len(problems)} bad row(s) in {source}:\n  " + "\n  ".join(shown))
    return instances


def _read_local(path: Path) -> list[dict[str, Any]]:
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    try:
        if suffix in (".jsonl", ".jsonl.gz"):
            import gzip

            opener = gzip.open if suffix.endswith(".gz") else open
            rows = []
            with opener(path, "rt", encoding="utf-8") as handle:  # type: ignore[operator]
                for number, line in enumerate(handle, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as exc:
                            raise DataError(
                                f"{path}: line {number} column {exc.colno}: not valid JSON: {exc.msg}"
                            ) from None
            return rows
        if suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):  # {instance_id: row}
                data = [{"instance_id": key, **value} if isinstance(value, dict) else value for key, value in data.items()]
            if not isinstance(data, list):
                raise DataError(f"{path}: expected a list of instances, got {type(data).__name__}")
            return data
        if suffix == ".parquet":
            import pyarrow
            import pyarrow.parquet as pq

            try:
                return pq.read_table(path).to_pylist()  # type: ignore[no-any-return]
            except pyarrow.ArrowException as exc:
                raise DataError(f"{path}: not a readable parquet file: {exc}") from None
    except OSError as exc:
        raise DataError(f"cannot read dataset {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: line {exc.lineno} column {exc.colno}: not valid JSON: {exc.msg}") from None
    raise DataError(f"dataset file {path} must end in .jsonl, .json or .parquet")


def _read_hub(name: str, split: str) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise DataError("loading from the hub needs the 'datasets' package") from exc
    try:
        with _hub_logs_once():
            table = datasets.load_dataset(name, split=split)
    except Exception as exc:  # noqa: BLE001 - the hub client raises many unrelated types
        raise DataError(f"cannot load dataset {name!r} (split {split!r}) from the hub: {exc}") from exc
    return [dict(row) for row in table]


@contextmanager
def _hub_logs_once() -> Iterator[None]:
    """The hub client logs through its own handler; keep its records from reaching ours a second time."""
    hub = logging.getLogger("huggingface_hub")
    before = hub.propagate
    hub.propagate = not hub.handlers
    try:
        yield
    finally:
        hub.propagate = before


def load_instances(
    dataset: str | Path,
    *,
    split: str = DEFAULT_SPLIT,
    instance_ids: Sequence[str] | None = None,
) -> list[Instance]:
    """Instances from a local file or a hub dataset, optionally only ``instance_ids`` (in that order).

    An id that is not in the dataset is a :class:`DataError` naming it.
    """
    path = Path(dataset).expanduser()
    if path.exists():
        rows = _read_local(path)
        source = str(path)
    else:
        name = DATASET_ALIASES.get(str(dataset).lower(), str(dataset))
        if "/" not in name or str(dataset).startswith((".", "/")) or Path(name).suffix in (".jsonl", ".json", ".parquet"):
            raise DataError(f"dataset {str(dataset)!r} is neither an existing file nor a hub name (owner/name)")
        rows = _read_hub(name, split)
        source = f"{name}[{split}]"
    if not rows:
        raise DataError(f"dataset {source} has no instances")
    if instance_ids:
        wanted = list(dict.fromkeys(instance_ids))
        by_id = {row.get("instance_id"): row for row in rows if isinstance(row, Mapping)}
        unknown = [iid for iid in wanted if iid not in by_id]
        if unknown:
            raise DataError(f"unknown instance id(s) in {source}: {', '.join(unknown)}")
        rows = [by_id[iid] for iid in wanted]
    return parse_instances(rows, source)


def split_ids(text: str | None) -> list[str]:
    """``a,b , c`` into ids, as given on the command line."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def load_predictions(path: Path) -> dict[str, str | None]:
    """``instance_id -> model_patch`` from a SWE-bench predictions file (JSONL, or a JSON list/object).

    A prediction whose patch is null stays ``None`` (graded unresolved, as the
    official harness does); a line without an instance id is a :class:`DataError`.
    """
    rows = _read_local(path)
    predictions: dict[str, str | None] = {}
    problems: list[str] = []
    for index, row in enumerate(rows):
        instance_id = row.get("instance_id") if isinstance(row, Mapping) else None
        if not isinstance(instance_id, str) or not instance_id:
            problems.append(f"row {index + 1}: no instance_id")
            continue
        patch = row.get("model_patch")
        if patch is not None and not isinstance(patch, str):
            problems.append(f"{instance_id!r}: model_patch must be a string or null")
            continue
        predictions[instance_id] = patch
    if problems:
        raise DataError(f"{len(problems)} bad prediction(s) in {path}:\n  " + "\n  ".join(problems[:20]))
    return predictions
