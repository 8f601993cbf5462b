"""Grading a run's patches in place: the selected one per instance, or every distinct candidate.

``codemonkeys report RUN --grade [--candidates]`` replaces the export ->
evaluate -> read-back route: each distinct patch (by instance and normalized
patch hash) is graded once, in the run's own environments, and its grade is
kept in the run store (stage ``grade``, key = patch hash). A rerun reads the
cached grades and grades nothing twice; only ``error`` grades (our
infrastructure failed) are tried again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..ensemble.load import LabelStatus
from ..errors import failure_kind
from ..swebench.instances import Instance
from .grades import CandidateGrades, distinct_patches
from .instance import GRADE_STAGE

log = logging.getLogger(__name__)
FINAL = ("resolved", "unresolved")
SOURCE = "run store (report --grade)"


class PatchGrader(Protocol):
    """Grades one patch of one instance; returns :meth:`GradeReport.as_dict` (``status`` and ``cause``)."""

    async def grade(self, instance: Instance, patch: str) -> dict[str, Any]: ...


class GradeStore(Protocol):
    def instance_states(self) -> list[dict[str, Any]]: ...

    def instance_data(self, instance_id: str) -> dict[str, Any]: ...

    def candidates(self, instance_id: str) -> list[dict[str, Any]]: ...

    def selections(self) -> list[dict[str, Any]]: ...

    def get_result(self, instance_id: str, stage: str, key: str) -> Any | None: ...

    def put_result(self, instance_id: str, stage: str, key: str, data: Any) -> None: ...


@dataclass
class GradeTally:
    """What one ``--grade`` did: patches graded now, found cached, and how many grades are errors."""

    graded: int = 0
    cached: int = 0
    errors: int = 0


def wanted_patches(store: GradeStore, *, candidates: bool) -> list[tuple[str, str, str]]:
    """``(instance_id, patch_hash, patch)`` to grade: each selected patch, or every distinct candidate."""
    selected = {s["instance_id"]: s["candidate_id"] for s in store.selections() if s["candidate_id"]}
    wanted = []
    for state in store.instance_states():
        iid = state["instance_id"]
        rows = store.candidates(iid)
        if not candidates:
            rows = [r for r in rows if r["candidate_id"] == selected.get(iid)]
        wanted += [(iid, key, patch) for key, patch, _ in distinct_patches(rows)]
    return wanted


async def grade_run(
    store: GradeStore,
    grader: PatchGrader,
    *,
    candidates: bool,
    on_grade: Callable[[str, str, dict[str, Any]], None] = lambda iid, key, grade: None,
) -> GradeTally:
    """Grade what ``--grade`` asks for, one patch at a time (builds and tests share the machine)."""
    tally = GradeTally()
    for iid, key, patch in wanted_patches(store, candidates=candidates):
        cached = store.get_result(iid, GRADE_STAGE, key)
        if cached is not None and cached.get("status") in FINAL:
            tally.cached += 1
            continue
        instance = Instance.model_validate(store.instance_data(iid))
        try:
            grade = await grader.grade(instance, patch)
        except Exception as exc:  # noqa: BLE001 - one patch's infrastructure failure is its grade, the rest go on
            log.warning("%s %s: grading failed: %s: %s", iid, key[:10], type(exc).__name__, exc)
            grade = {"status": "error", "cause": f"{failure_kind(exc)}: {type(exc).__name__}: {exc}"[:2000]}
        store.put_result(iid, GRADE_STAGE, key, grade)
        tally.graded += 1
        tally.errors += grade.get("status") == "error"
        on_grade(iid, key, grade)
    return tally


def stored_grades(store: GradeStore) -> CandidateGrades:
    """Every grade the store holds, by (instance id, patch hash), for :func:`~.data.gather`."""
    grades = CandidateGrades(sources=[SOURCE])
    for state in store.instance_states():
        iid = state["instance_id"]
        for key, _, _ in distinct_patches(store.candidates(iid)):
            found = store.get_result(iid, GRADE_STAGE, key)
            if found is not None and found.get("status") in ("resolved", "unresolved", "error"):
                grades.by_patch[(iid, key)] = LabelStatus(found["status"])
    return grades


class EnvironmentGrader:
    """The real grader: the run's environment for the instance, a fresh sandbox, the SWE-bench eval script."""

    def __init__(
        self, sandboxes: Any, environments: Any, specs: Any, timeout_s: float, *, reinstall: str = "always", network: bool = False
    ) -> None:
        self._sandboxes = sandboxes
        self._environments = environments
        self._specs = specs
        self._timeout_s = timeout_s
        self._reinstall = reinstall
        self._network = network

    async def grade(self, instance: Instance, patch: str) -> dict[str, Any]:
        from ..env.validate import grade_patch

        ref = await self._environments.environment(instance)
        spec = self._specs.get(instance.repo, instance.version)
        report = await grade_patch(
            self._sandboxes, ref, instance, spec, patch, timeout_s=self._timeout_s,
            reinstall=self._reinstall, network=self._network,
        )
        return report.as_dict()

