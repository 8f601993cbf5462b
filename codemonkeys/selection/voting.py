"""Test voting: rank candidate patches by how many reproduction tests they make pass.

Rules (paper section 3.3, with our tie-breaks made explicit):

* Candidates are merged by :func:`~codemonkeys.edits.patch_hash` of their
  normalized patch; the merged candidate keeps every member id, and its
  multiplicity is how many trajectories produced it.
* A test votes for a candidate when it exits 0 (``FIXED``) on it. Only tests
  that do not already exit 0 on the original code count: a test that passes
  before any fix cannot tell fixes apart. A test without a result on the
  original code is not counted either (we cannot know it discriminates).
* Ranking: non-empty patches first (an empty patch never beats a real one),
  then votes (desc), then fewer changed lines (the paper's tie-break: smaller
  diffs are less likely to break something), then multiplicity (desc: more
  trajectories converged on it), then the smallest member id, so the order
  never depends on input order.
* Multiplicity never multiplies votes: the tests, not the number of copies,
  are the evidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from ..edits import TestOutcome, changed_lines, classify_exit, normalize_patch, patch_hash

Outcome = TestOutcome | int
"""A test result: an outcome, or a bare exit code (classified as not timed out)."""


class Candidate(BaseModel):
    """One trajectory's final patch; ``id`` names the trajectory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    patch: str


class CandidateGroup(BaseModel):
    """Identical candidates merged: one patch to execute tests on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(
        description="patch_hash of the normalized patch; the column key of the results matrix"
    )
    patch: str = Field(description="the normalized patch")
    member_ids: tuple[str, ...]
    changed_lines: int

    @property
    def multiplicity(self) -> int:
        return len(self.member_ids)

    @property
    def is_empty(self) -> bool:
        return not self.patch


class RankedCandidate(BaseModel):
    """A candidate group with its votes, in ranking order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    group: CandidateGroup
    votes: int
    passing_tests: tuple[str, ...] = Field(description="ids of the counted tests that exit 0 on it")

    @property
    def key(self) -> str:
        return self.group.key

    def sort_key(self) -> tuple[bool, int, int, int, str]:
        """The ranking order as a tuple; smaller sorts first."""
        group = self.group
        return (
            group.is_empty,
            -self.votes,
            group.changed_lines,
            -group.multiplicity,
            group.member_ids[0],
        )


def group_candidates(candidates: Iterable[Candidate]) -> list[CandidateGroup]:
    """Merge identical patches; groups come in order of first appearance."""
    members: dict[str, list[str]] = {}
    patches: dict[str, str] = {}
    seen: set[str] = set()
    for candidate in candidates:
        if candidate.id in seen:
            raise ValueError(f"candidate id {candidate.id!r} appears more than once")
        seen.add(candidate.id)
        normal = normalize_patch(candidate.patch)
        key = patch_hash(normal)
        patches.setdefault(key, normal)
        members.setdefault(key, []).append(candidate.id)
    return [
        CandidateGroup(
            key=key,
            patch=patches[key],
            member_ids=tuple(sorted(ids)),
            changed_lines=changed_lines(patches[key]),
        )
        for key, ids in members.items()
    ]


def _outcome(value: Outcome) -> TestOutcome:
    if isinstance(value, TestOutcome):
        return value
    return classify_exit(value, timed_out=False)


def counted_tests(original: Mapping[str, Outcome], test_ids: Iterable[str]) -> list[str]:
    """Tests that can discriminate: they have a result on the original code and it is not FIXED."""
    return [t for t in test_ids if t in original and _outcome(original[t]) is not TestOutcome.FIXED]


def rank_candidates(
    groups: Sequence[CandidateGroup],
    results: Mapping[str, Mapping[str, Outcome]],
    original: Mapping[str, Outcome],
) -> list[RankedCandidate]:
    """All groups with their votes, best first.

    ``results[test_id][group.key]`` is that test's outcome on that candidate; a
    missing entry (not run, infra failure) is no vote.
    """
    tests = counted_tests(original, sorted(results))
    ranked = []
    for group in groups:
        passing = tuple(
            t
            for t in tests
            if group.key in results[t] and _outcome(results[t][group.key]) is TestOutcome.FIXED
        )
        ranked.append(RankedCandidate(group=group, votes=len(passing), passing_tests=passing))
    return sorted(ranked, key=RankedCandidate.sort_key)


def top_k(
    candidates: Iterable[Candidate],
    results: Mapping[str, Mapping[str, Outcome]],
    original: Mapping[str, Outcome],
    k: int,
) -> list[RankedCandidate]:
    """The ``k`` best distinct candidates: what the selection trajectory gets to see."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    return rank_candidates(group_candidates(candidates), results, original)[:k]
