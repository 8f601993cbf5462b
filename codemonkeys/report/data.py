"""Everything the run report shows, gathered from the run store (and grades, when given).

Pure reads: nothing here writes to the store or the disk. Populations are
stated, not implied: the score and cost per resolved instance are over every
instance of the run; coverage is over the instances whose candidates are all
graded, and the report says how many were left out.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from ..ensemble.load import Labels, LabelStatus
from ..store.records import CallRecord, LedgerRow, TrajectoryRecord
from .grades import CandidateGrades
from .passk import (
    PowerLawFit,
    Sampled,
    SelectionVsCoverage,
    coverage_curve,
    fit_power_law,
    selection_vs_coverage,
)

GENERATION_SOURCE = "generation"
GENERATION_KINDS = ("testing", "editing")
# Pipeline order for display; stages not listed follow, by name.
STAGE_ORDER = ("relevance", "ranking", "context", "testing", "editing", "selection")


class ReportSource(Protocol):
    """The part of the run store a report reads."""

    def ledger(self, group_by: Sequence[str] = ..., **where: str | None) -> list[LedgerRow]: ...

    def calls(self, **where: str | None) -> list[CallRecord]: ...

    def instance_states(self) -> list[dict[str, Any]]: ...

    def trajectories(self, instance_id: str | None = None, kind: str | None = None) -> list[TrajectoryRecord]: ...

    def candidates(self, instance_id: str) -> list[dict[str, Any]]: ...

    def selections(self) -> list[dict[str, Any]]: ...

    def get_result(self, instance_id: str, stage: str, key: str) -> Any | None: ...


@dataclass(frozen=True)
class Spend:
    """One ledger group; ``stage``/``model`` are ``"all"`` in totals."""

    stage: str
    model: str
    calls: int
    cached_calls: int
    failed_calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float
    unpriced_calls: int

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def cache_read_share(self) -> float:
        """Share of prompt tokens read from the provider's cache (the cheap ones)."""
        return self.cache_read_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


@dataclass(frozen=True)
class BudgetCut:
    instance_id: str
    trajectories: int
    configured_trajectories: int
    max_iterations: int
    configured_iterations: int
    reason: str


@dataclass(frozen=True)
class InstanceOutcome:
    """One instance: its state, trajectories, candidates, selection and grades (``None``: not graded)."""

    instance_id: str
    stage: str
    status: str
    failure_kind: str | None
    trajectories: int
    candidates: int
    method: str | None
    selected: str | None
    correct: int | None = None
    pool_correct: int | None = None
    selected_status: str | None = None


@dataclass
class Grading:
    """What labels allow: the score, cost per resolved instance, coverage and how selection compares."""

    instances: int
    resolved: int
    cost_per_resolved: float | None
    label_sources: list[str]
    graded_instances: int = 0
    ungraded_instances: int = 0
    curve: list[tuple[int, float]] = field(default_factory=list)
    fit: PowerLawFit | None = None
    selection: SelectionVsCoverage | None = None
    by_method: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return self.resolved / self.instances if self.instances else 0.0


@dataclass
class ReportData:
    run_dir: str
    created: float
    oracle_models: list[str]
    spend: list[Spend]
    spend_by_stage: list[Spend]
    total: Spend
    instance_counts: dict[str, int]
    outcomes: list[InstanceOutcome]
    plans: int
    budget_cuts: list[BudgetCut]
    failures: dict[tuple[str, str], dict[str, int]]
    trajectory_statuses: dict[str, dict[str, int]]
    grading: Grading | None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (failure keys become ``"what: stage"``)."""
        data = asdict(self)
        data["failures"] = {f"{what}: {stage}": counts for (what, stage), counts in self.failures.items()}
        return data


def _spend(row: LedgerRow, stage: str, model: str) -> Spend:
    return Spend(
        stage=stage, model=model, calls=row.calls, cached_calls=row.cached_calls, failed_calls=row.failed_calls,
        input_tokens=row.input_tokens, output_tokens=row.output_tokens, cache_read_tokens=row.cache_read_tokens,
        cache_write_tokens=row.cache_write_tokens, cost_usd=row.cost_usd, unpriced_calls=row.unpriced_calls,
    )


def _stage_rank(stage: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER), stage)


def _generation_index(candidate: dict[str, Any]) -> int | None:
    trajectory = candidate["data"].get("trajectory")
    if candidate["source"] != GENERATION_SOURCE or not isinstance(trajectory, str):
        return None
    tail = trajectory.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


def failure_counts(
    states: Sequence[dict[str, Any]], trajectories: Sequence[TrajectoryRecord], calls: Sequence[CallRecord]
) -> dict[tuple[str, str], dict[str, int]]:
    """``(what, stage) -> {kind: count}`` for failed instances, trajectories and LLM calls."""
    counts: dict[tuple[str, str], Counter[str]] = {}
    for state in states:
        if state["status"] == "failed":
            counts.setdefault(("instances", state["stage"]), Counter())[state["failure_kind"] or "unknown"] += 1
    for record in trajectories:
        if record.status == "failed":
            counts.setdefault(("trajectories", record.kind), Counter())[record.failure_kind or "unknown"] += 1
    for call in calls:
        if call.error_kind is not None:
            counts.setdefault(("calls", call.stage), Counter())[call.error_kind] += 1
    return {key: dict(counter) for key, counter in sorted(counts.items())}


@dataclass
class _Tally:
    """Per-instance grades collected while walking the run, for :func:`_grading`."""

    samples: list[Sampled] = field(default_factory=list)
    pool: list[tuple[Sampled, bool]] = field(default_factory=list)
    ungraded: int = 0
    unmentioned: int = 0


def gather(
    store: ReportSource,
    run_dir: str,
    *,
    labels: Labels | None = None,
    grades: CandidateGrades | None = None,
) -> ReportData:
    """Read the whole report from the store; ``labels`` grade the selected patches, ``grades`` every candidate."""
    spend = sorted(
        (_spend(r, str(r.group[0]), str(r.group[1])) for r in store.ledger(group_by=("stage", "model"))),
        key=lambda s: (_stage_rank(s.stage), s.model),
    )
    by_stage = sorted(
        (_spend(r, str(r.group[0]), "all") for r in store.ledger(group_by=("stage",))), key=lambda s: _stage_rank(s.stage)
    )
    totals = store.ledger(group_by=())
    total = _spend(totals[0], "all", "all") if totals else Spend("all", "all", 0, 0, 0, 0, 0, 0, 0, 0.0, 0)

    states = store.instance_states()
    selections = {s["instance_id"]: s for s in store.selections()}
    by_id = {s["instance_id"]: s for s in states}
    trajectories = store.trajectories()
    indexes: dict[str, set[int]] = {}
    for t in trajectories:
        if t.kind in GENERATION_KINDS:
            indexes.setdefault(t.instance_id, set()).add(t.index)

    outcomes, cuts, plans, tally = [], [], 0, _Tally()
    for iid in sorted(set(by_id) | set(selections)):
        plan = store.get_result(iid, "plan", "generation")
        if plan is not None:
            plans += 1
            if plan.get("degraded"):
                cuts.append(BudgetCut(
                    iid, plan["trajectories"], plan["configured_trajectories"], plan["max_iterations"],
                    plan["configured_iterations"], plan.get("reason") or "",
                ))
        state = by_id.get(iid, {"stage": "-", "status": "-", "failure_kind": None})
        outcomes.append(_outcome(
            iid, state, store.candidates(iid), indexes.get(iid, set()), selections.get(iid), labels, grades, tally
        ))

    grading = None if labels is None and grades is None else _grading(outcomes, total, labels, grades, tally)
    return ReportData(
        run_dir=run_dir, created=time.time(), oracle_models=sorted({s.model for s in spend if s.model.startswith("oracle")}),
        spend=spend, spend_by_stage=by_stage, total=total,
        instance_counts=dict(sorted(Counter(o.status if o.status == "done" else f"{o.stage} {o.status}" for o in outcomes).items())),
        outcomes=outcomes, plans=plans, budget_cuts=cuts,
        failures=failure_counts(states, trajectories, store.calls()),
        trajectory_statuses=_trajectory_statuses(trajectories), grading=grading, notes=_notes(outcomes, labels, tally),
    )


def _outcome(
    iid: str,
    state: dict[str, Any],
    candidates: list[dict[str, Any]],
    indexes: set[int],
    selection: dict[str, Any] | None,
    labels: Labels | None,
    grades: CandidateGrades | None,
    tally: _Tally,
) -> InstanceOutcome:
    """One instance's row; adds its grades to ``tally`` when every candidate has one."""
    indexes = indexes | {i for c in candidates if (i := _generation_index(c)) is not None}
    selected = selection["candidate_id"] if selection else None
    statuses = {c["candidate_id"]: grades.status(c) if grades else None for c in candidates}
    selected_status = _selected_status(iid, selected, labels, grades, statuses)
    if labels is not None and selected is not None and iid not in labels.mentioned and statuses.get(selected) is None:
        tally.unmentioned += 1
    correct = pool_correct = None
    if grades is not None and all(status is not None for status in statuses.values()):
        generated = [c for c in candidates if _generation_index(c) is not None]
        correct = sum(1 for c in generated if statuses[c["candidate_id"]] == LabelStatus.RESOLVED)
        pool_correct = sum(1 for status in statuses.values() if status == LabelStatus.RESOLVED)
        tally.samples.append(Sampled(len(indexes), correct))
        others = len(candidates) - len(generated)
        tally.pool.append((Sampled(len(indexes) + others, pool_correct), selected_status == LabelStatus.RESOLVED))
    elif grades is not None:
        tally.ungraded += 1
    return InstanceOutcome(
        instance_id=iid, stage=state["stage"], status=state["status"], failure_kind=state["failure_kind"],
        trajectories=len(indexes), candidates=len(candidates),
        method=selection["method"] if selection else None, selected=selected,
        correct=correct, pool_correct=pool_correct,
        selected_status=None if selected_status is None else str(selected_status),
    )


def _grading(
    outcomes: list[InstanceOutcome], total: Spend, labels: Labels | None, grades: CandidateGrades | None, tally: _Tally
) -> Grading:
    resolved = sum(1 for o in outcomes if o.selected_status == LabelStatus.RESOLVED)
    grading = Grading(
        instances=len(outcomes), resolved=resolved,
        cost_per_resolved=total.cost_usd / resolved if resolved else None,
        label_sources=([labels.source] if labels else []) + (grades.sources if grades else []),
    )
    methods: dict[str, list[int]] = {}
    for o in outcomes:
        entry = methods.setdefault(o.method or "no selection", [0, 0])
        entry[0] += 1
        entry[1] += o.selected_status == LabelStatus.RESOLVED
    grading.by_method = {m: (n, r) for m, (n, r) in sorted(methods.items())}
    if grades is not None:
        grading.graded_instances, grading.ungraded_instances = len(tally.samples), tally.ungraded
        grading.curve = coverage_curve(tally.samples) if any(s.n for s in tally.samples) else []
        grading.fit = fit_power_law(grading.curve)
        grading.selection = selection_vs_coverage(tally.pool)
    return grading


def _notes(outcomes: list[InstanceOutcome], labels: Labels | None, tally: _Tally) -> list[str]:
    notes = []
    if tally.ungraded:
        notes.append(f"{tally.ungraded} instance(s) have candidates without a grade and are left out of coverage.")
    errors = sum(1 for o in outcomes if o.selected_status == LabelStatus.ERROR)
    if errors:
        notes.append(f"{errors} selected patch(es) could not be graded (error) and count as unresolved.")
    if labels is not None and tally.unmentioned:
        notes.append(f"{tally.unmentioned} selected patch(es) are not in {labels.source} and count as unresolved.")
    return notes


def _selected_status(
    iid: str, selected: str | None, labels: Labels | None, grades: CandidateGrades | None,
    statuses: dict[str, LabelStatus | None],
) -> LabelStatus | None:
    """The selected patch's grade: the selection labels first, else its candidate grade.

    No selection is unresolved (there is no prediction); ``None`` means unknown.
    A label file that does not mention a selected instance counts it unresolved,
    as SWE-bench does.
    """
    if labels is None and grades is None:
        return None
    if selected is None:
        return LabelStatus.UNRESOLVED
    if labels is not None and iid in labels.mentioned:
        return labels.status(iid)
    found = statuses.get(selected)
    if found is not None:
        return found
    return LabelStatus.UNRESOLVED if labels is not None else None


def _trajectory_statuses(trajectories: Sequence[TrajectoryRecord]) -> dict[str, dict[str, int]]:
    table: dict[str, Counter[str]] = {}
    for record in trajectories:
        table.setdefault(record.kind, Counter())[record.status] += 1
    return {kind: dict(sorted(counter.items())) for kind, counter in sorted(table.items())}
