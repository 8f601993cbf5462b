"""What an ensemble of submissions could score: a pure report over loaded members.

Per instance of an explicit universe (the dataset's ids: rates are over the
whole dataset, not over the rows some member happened to submit):

* candidates: members with a non-empty patch; distinct: of those, how many
  different patches after :func:`~codemonkeys.edits.normalize_patch`;
* oracle: some member is resolved (the ceiling of any selection method);
* random choice: the expected score of picking uniformly among the members
  with a patch, ``resolved_with_patch / with_patch`` (0 when nobody has one);
* the selected member's status, when a selection is given.

Member statuses come from their labels; a member labelled resolved without a
patch in its predictions still counts as resolved for its own rate and the
oracle (the official grade wins) and is counted in ``resolved_without_patch``
so the inconsistency is visible.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from ..edits import patch_hash
from ..errors import DataError
from .load import EnsembleMember, LabelStatus


class InstanceRow(BaseModel):
    """One instance of the universe."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instance_id: str
    with_patch: tuple[str, ...]
    distinct: int
    resolved: tuple[str, ...]
    random_expectation: float
    selected: str | None = None
    selected_status: LabelStatus | None = None

    @property
    def candidates(self) -> int:
        return len(self.with_patch)

    @property
    def oracle(self) -> bool:
        return bool(self.resolved)


class MemberSummary(BaseModel):
    """One member over the universe."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    patches: int
    resolved: int
    rate: float
    resolved_without_patch: int


class EnsembleReport(BaseModel):
    """Per-instance rows and totals; rates are fractions of ``n_instances``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_instances: int
    members: tuple[MemberSummary, ...]
    instances: tuple[InstanceRow, ...]
    candidates: int
    distinct: int
    oracle_resolved: int
    random_expected_resolved: float
    selected_resolved: int | None
    unparsable_patches: int

    @property
    def oracle_rate(self) -> float:
        return self.oracle_resolved / self.n_instances

    @property
    def best_member(self) -> MemberSummary | None:
        """The member that resolves most on its own (first in member order on a tie)."""
        return max(self.members, key=lambda m: m.resolved, default=None)

    @property
    def random_rate(self) -> float:
        return self.random_expected_resolved / self.n_instances

    @property
    def selected_rate(self) -> float | None:
        return None if self.selected_resolved is None else self.selected_resolved / self.n_instances


def instance_universe(members: Iterable[EnsembleMember]) -> tuple[str, ...]:
    """Every id any member's predictions or labels mention, sorted."""
    ids: set[str] = set()
    for member in members:
        ids |= member.predictions.all_ids | member.labels.mentioned
    return tuple(sorted(ids))


def _patch_key(patch: str) -> tuple[str, bool]:
    """Identity of a patch for counting distinct ones, and whether it parsed."""
    try:
        return patch_hash(patch), True
    except DataError:
        return "raw:" + hashlib.sha256(patch.strip().encode("utf-8")).hexdigest(), False


def ensemble_report(
    members: Sequence[EnsembleMember],
    universe: Iterable[str],
    selection: Mapping[str, str] | None = None,
) -> EnsembleReport:
    """The report over ``universe``; ``selection`` maps instance id to the chosen member's name.

    Ids outside the universe are ignored (a member may have predictions for a
    larger dataset); an instance without a selection counts as not resolved.
    """
    ids = tuple(dict.fromkeys(universe))
    if not ids:
        raise DataError("the instance universe is empty")
    names = [member.name for member in members]
    if len(set(names)) != len(names):
        raise DataError(f"member names must be unique, got {names}")
    by_name = {member.name: member for member in members}
    if selection is not None:
        unknown = sorted({name for name in selection.values() if name not in by_name})
        if unknown:
            raise DataError(f"the selection names unknown members {unknown}; members are {names}")
    rows: list[InstanceRow] = []
    unparsable: set[str] = set()
    for instance_id in ids:
        with_patch = tuple(m.name for m in members if instance_id in m.predictions.patches)
        resolved = tuple(
            m.name for m in members if m.labels.status(instance_id) is LabelStatus.RESOLVED
        )
        keys: set[str] = set()
        for name in with_patch:
            key, parsed = _patch_key(by_name[name].predictions.patches[instance_id])
            keys.add(key)
            if not parsed:
                unparsable.add(f"{name}/{instance_id}")
        resolved_with_patch = sum(1 for name in with_patch if name in resolved)
        chosen = selection.get(instance_id) if selection is not None else None
        rows.append(
            InstanceRow(
                instance_id=instance_id,
                with_patch=with_patch,
                distinct=len(keys),
                resolved=resolved,
                random_expectation=resolved_with_patch / len(with_patch) if with_patch else 0.0,
                selected=chosen,
                selected_status=by_name[chosen].labels.status(instance_id)
                if chosen is not None
                else None,
            )
        )
    summaries = tuple(
        MemberSummary(
            name=m.name,
            patches=sum(1 for i in ids if i in m.predictions.patches),
            resolved=sum(1 for row in rows if m.name in row.resolved),
            rate=sum(1 for row in rows if m.name in row.resolved) / len(ids),
            resolved_without_patch=sum(
                1 for row in rows if m.name in row.resolved and m.name not in row.with_patch
            ),
        )
        for m in members
    )
    return EnsembleReport(
        n_instances=len(ids),
        members=summaries,
        instances=tuple(rows),
        candidates=sum(row.candidates for row in rows),
        distinct=sum(row.distinct for row in rows),
        oracle_resolved=sum(1 for row in rows if row.oracle),
        random_expected_resolved=sum(row.random_expectation for row in rows),
        selected_resolved=(
            sum(1 for row in rows if row.selected_status is LabelStatus.RESOLVED)
            if selection is not None
            else None
        ),
        unparsable_patches=len(unparsable),
    )
