"""Export a run's selections as a SWE-bench predictions file.

One row per instance with a selection (``instance_id``, ``model_name_or_path``,
``model_patch``); an instance where nothing was selected has no row. The
patch is the selected candidate's own text, as it was produced or submitted.

A run touched by an oracle model (it reads the gold patch) anywhere is refused
unless ``allow_oracle``, like inspect_ai's mock model taints what it touches:
an oracle in any stage's ledger (context included), and, per prediction, the
models recorded on the candidate (``models``), those of the trajectories that
produced it, and the selection trajectory's.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .errors import DataError, UserError
from .oracle import is_oracle
from .store.records import CallRecord, LedgerRow


class ExportSource(Protocol):
    """The part of the run store an export reads."""

    def selections(self) -> list[dict[str, Any]]: ...

    def candidates(self, instance_id: str) -> list[dict[str, Any]]: ...

    def calls(self, **where: str | None) -> list[CallRecord]: ...

    def ledger(self, group_by: Sequence[str] = ..., **where: str | None) -> list[LedgerRow]: ...


@dataclass(frozen=True)
class Prediction:
    instance_id: str
    patch: str
    candidate_id: str
    models: tuple[str, ...]

    def row(self, model_name: str) -> dict[str, str]:
        return {"instance_id": self.instance_id, "model_name_or_path": model_name, "model_patch": self.patch}


def _trajectory_models(store: ExportSource, trajectories: Iterable[str]) -> set[str]:
    return {call.model for tid in trajectories for call in store.calls(trajectory=tid)}


def candidate_models(store: ExportSource, candidate: dict[str, Any]) -> set[str]:
    """Every model known to have produced a candidate."""
    data = candidate.get("data", {})
    models = {m for m in data.get("models", []) if isinstance(m, str)}
    trajectory = data.get("trajectory")
    if isinstance(trajectory, str):  # a generation candidate: its editing and testing trajectories
        models |= _trajectory_models(store, {trajectory, trajectory.replace("/editing/", "/testing/")})
    return models


def predictions(store: ExportSource) -> list[Prediction]:
    """The selected candidate of every instance that has one, with the models behind it."""
    found: list[Prediction] = []
    for selection in store.selections():
        candidate_id = selection["candidate_id"]
        if candidate_id is None:
            continue
        instance_id = selection["instance_id"]
        rows = [row for row in store.candidates(instance_id) if row["candidate_id"] == candidate_id]
        if not rows:
            raise DataError(f"{instance_id}: the selected candidate {candidate_id!r} is not in the store")
        patch = rows[0]["patch"]
        if not patch.strip():
            raise DataError(f"{instance_id}: the selected candidate {candidate_id!r} has an empty patch")
        models = candidate_models(store, rows[0])
        trajectory = selection["data"].get("trajectory")
        if isinstance(trajectory, str):
            models |= _trajectory_models(store, [trajectory])
        found.append(Prediction(instance_id, patch, candidate_id, tuple(sorted(models))))
    return found


def oracle_tainted(rows: Iterable[Prediction]) -> list[Prediction]:
    return [row for row in rows if any(is_oracle(model) for model in row.models)]


def oracle_stages(store: ExportSource) -> dict[str, list[str]]:
    """Stage -> the oracle models its calls used, for every stage of the run that used one."""
    used: dict[str, list[str]] = {}
    for row in store.ledger(group_by=("stage", "model")):
        stage, model = row.group
        if model is not None and is_oracle(model):
            used.setdefault(str(stage), []).append(model)
    return used


def run_taint(store: ExportSource, rows: Iterable[Prediction]) -> str | None:
    """Why the run's predictions are oracle work, ``None`` when they are not."""
    stages = oracle_stages(store)
    tainted = oracle_tainted(rows)
    if not stages and not tainted:
        return None
    parts = [f"{stage} ({', '.join(models)})" for stage, models in sorted(stages.items())]
    if tainted:
        shown = ", ".join(row.instance_id for row in tainted[:5]) + (" ..." if len(tainted) > 5 else "")
        parts.append(f"{len(tainted)} selected candidate(s): {shown}")
    return "an oracle model, which reads the gold patch, was used by " + "; ".join(parts)


def export_predictions(
    store: ExportSource, output: Path, *, model_name: str, allow_oracle: bool = False
) -> list[Prediction]:
    """Write the predictions file (atomically) and return what was written."""
    rows = predictions(store)
    taint = run_taint(store, rows)
    if taint is not None and not allow_oracle:
        raise UserError(f"{taint}; pass --allow-oracle to export anyway")
    output = Path(output).expanduser()
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            for row in rows:
                stream.write(json.dumps(row.row(model_name)) + "\n")
        os.replace(temporary, output)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return rows
