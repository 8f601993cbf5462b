"""Pooling candidates for an ensemble: submissions' patches, another run's candidates, and tests.

Submissions become candidates in the run store with ``source`` = the
submission's name, so selection treats them exactly like generated ones. A
patch that is missing, empty or not a diff is skipped and counted, never an
error. Instances without any test get tests from the generation stage's
testing phase (:func:`generate_tests`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..edits import patch_hash
from ..errors import DataError
from ..generation.stage import testing_trajectory
from ..generation.trajectory import TrajectoryDeps
from ..selection.stage import IMPORTED_TESTS, STAGE, SelectionSource, stored_tests
from ..store.records import CallRecord
from .load import PredictionSet

log = logging.getLogger(__name__)

SUBMISSION = "submission"


def submission_candidate_id(instance_id: str, name: str) -> str:
    return f"{instance_id}/{SUBMISSION}/{name}"


class CandidateStore(Protocol):
    def add_candidate(
        self, candidate_id: str, instance_id: str, source: str, patch: str, patch_hash: str, data: dict[str, Any]
    ) -> None: ...


@dataclass
class PoolSummary:
    """What went into the store, per member, and what was skipped (counts, not errors)."""

    added: Counter[str] = field(default_factory=Counter)
    no_prediction: Counter[str] = field(default_factory=Counter)
    no_patch: Counter[str] = field(default_factory=Counter)
    unparsable: Counter[str] = field(default_factory=Counter)

    def skipped(self, name: str) -> int:
        """Rows for the instances whose patch is missing, empty or not a diff."""
        return self.no_patch[name] + self.unparsable[name]


def pool_submissions(
    store: CandidateStore, members: Sequence[tuple[str, PredictionSet]], instance_ids: Iterable[str]
) -> PoolSummary:
    """Add each member's patch for each instance of ``instance_ids`` as a candidate (idempotent)."""
    ids = list(dict.fromkeys(instance_ids))
    summary = PoolSummary()
    for name, predictions in members:
        for instance_id in ids:
            patch = predictions.patches.get(instance_id)
            if patch is None:  # the loader dropped rows whose patch is missing or empty
                counter = summary.no_patch if instance_id in predictions.all_ids else summary.no_prediction
                counter[name] += 1
                continue
            try:
                key = patch_hash(patch)
            except DataError as exc:
                log.info("%s: the patch of %s is not a diff: %s", name, instance_id, exc)
                summary.unparsable[name] += 1
                continue
            data = {"submission": name, "file": predictions.source, "models": list(predictions.model_names)}
            store.add_candidate(submission_candidate_id(instance_id, name), instance_id, name, patch, key, data)
            summary.added[name] += 1
    return summary


class ImportTarget(CandidateStore, Protocol):
    def put_result(self, instance_id: str, stage: str, key: str, data: Any) -> None: ...


class RunSource(SelectionSource, Protocol):
    """Another run's store, read to import its candidates."""

    def calls(self, **where: str | None) -> list[CallRecord]: ...


def include_run(store: ImportTarget, other: RunSource, label: str, instance_ids: Iterable[str]) -> int:
    """Copy another run's candidates (source ``run:<label>``) and its tests into this run.

    The models that produced each candidate are copied too, so an export can
    still tell an oracle's candidate apart.
    """
    added = 0
    for instance_id in instance_ids:
        for row in other.candidates(instance_id):
            data = dict(row["data"])
            trajectory = data.get("trajectory")
            models = set(data.get("models", []))
            if isinstance(trajectory, str):
                for tid in (trajectory, trajectory.replace("/editing/", "/testing/")):
                    models.update(call.model for call in other.calls(trajectory=tid))
            data.update(models=sorted(models), imported_from=label, original_source=row["source"])
            store.add_candidate(row["candidate_id"], instance_id, f"run:{label}", row["patch"], row["patch_hash"], data)
            added += 1
        tests = stored_tests(other, instance_id)
        if tests:
            store.put_result(instance_id, STAGE, IMPORTED_TESTS, tests)
    return added


async def generate_tests(deps: TrajectoryDeps, instance_id: str, issue: str, count: int) -> list[str]:
    """Run (or resume) ``count`` testing trajectories, as generation does; the tests they produced.

    Failed trajectories are recorded and skipped; infrastructure failures are retried on a rerun.
    """
    states = await asyncio.gather(*(testing_trajectory(deps, instance_id, issue, i) for i in range(count)))
    return [state.test for state in states if state.test is not None]
