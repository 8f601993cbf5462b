"""Test voting over candidate patches."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codemonkeys.edits import TestOutcome, make_diff, patch_hash
from codemonkeys.selection import Candidate, counted_tests, group_candidates, rank_candidates, top_k

BASE = {"m.py": "def f(x):\n    return x\n\n\ndef g(y):\n    return y\n"}


def diff(old: str, new: str, path: str = "m.py") -> str:
    return make_diff(BASE, {path: BASE[path].replace(old, new)})


SMALL = diff("return x", "return x + 1")  # 2 changed lines
BIG = diff("    return x\n", "    x = x + 1\n    return x * 2\n")  # 3 changed lines
OTHER = diff("return y", "return -y")


def key(patch: str) -> str:
    return patch_hash(patch)


def test_identical_patches_merge_with_multiplicity() -> None:
    git_style = SMALL.replace("--- a/m.py", "index 0123abc..4567def 100644\n--- a/m.py")
    groups = group_candidates(
        [
            Candidate(id="t3", patch=SMALL),
            Candidate(id="t1", patch=git_style),
            Candidate(id="t2", patch=OTHER),
        ]
    )
    assert [(g.member_ids, g.multiplicity) for g in groups] == [(("t1", "t3"), 2), (("t2",), 1)]
    assert groups[0].patch == SMALL and groups[0].key == key(SMALL)
    assert [g.changed_lines for g in groups] == [2, 2]
    assert group_candidates([Candidate(id="b", patch=BIG)])[0].changed_lines == 3


def test_duplicate_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match="more than once"):
        group_candidates([Candidate(id="a", patch=SMALL), Candidate(id="a", patch=OTHER)])


def test_votes_count_only_tests_failing_on_the_original() -> None:
    groups = group_candidates([Candidate(id="a", patch=SMALL), Candidate(id="b", patch=OTHER)])
    results = {
        "always_passes": {key(SMALL): 0, key(OTHER): 0},
        "t_small": {key(SMALL): 0, key(OTHER): 2},
        "t_both": {key(SMALL): TestOutcome.FIXED, key(OTHER): TestOutcome.FIXED},
        "crashes_on_original": {key(SMALL): 0, key(OTHER): 1},
        "no_original_result": {key(SMALL): 0, key(OTHER): 0},
    }
    original = {
        "always_passes": 0,
        "t_small": 2,
        "t_both": TestOutcome.NOT_FIXED,
        "crashes_on_original": 1,
    }
    assert counted_tests(original, sorted(results)) == ["crashes_on_original", "t_both", "t_small"]
    ranked = rank_candidates(groups, results, original)
    assert [(r.group.member_ids, r.votes, r.passing_tests) for r in ranked] == [
        (("a",), 3, ("crashes_on_original", "t_both", "t_small")),
        (("b",), 1, ("t_both",)),
    ]


def test_missing_results_and_timeouts_are_no_votes() -> None:
    groups = group_candidates([Candidate(id="a", patch=SMALL), Candidate(id="b", patch=OTHER)])
    results = {"t1": {key(SMALL): TestOutcome.TIMED_OUT}, "t2": {key(OTHER): 0}}
    ranked = rank_candidates(groups, results, {"t1": 2, "t2": 2})
    assert [(r.group.member_ids, r.votes) for r in ranked] == [(("b",), 1), (("a",), 0)]


def test_ties_break_on_smaller_diff_then_multiplicity_then_id() -> None:
    candidates = [
        Candidate(id="big", patch=BIG),
        Candidate(id="small-2", patch=SMALL),
        Candidate(id="other", patch=OTHER),
        Candidate(id="small-1", patch=SMALL),
    ]
    groups = group_candidates(candidates)
    results = {"t": {key(BIG): 0, key(SMALL): 0, key(OTHER): 0}}
    ranked = rank_candidates(groups, results, {"t": 2})
    assert [r.group.member_ids for r in ranked] == [("small-1", "small-2"), ("other",), ("big",)]
    # Equal size and multiplicity: the smallest member id decides, not input order.
    reordered = rank_candidates(list(reversed(groups)), results, {"t": 2})
    assert [r.group.member_ids for r in reordered] == [r.group.member_ids for r in ranked]


def test_multiplicity_does_not_multiply_votes() -> None:
    candidates = [Candidate(id=f"s{i}", patch=SMALL) for i in range(5)] + [
        Candidate(id="o", patch=OTHER)
    ]
    results = {"t1": {key(OTHER): 0}, "t2": {key(OTHER): 0, key(SMALL): 0}}
    ranked = rank_candidates(group_candidates(candidates), results, {"t1": 2, "t2": 2})
    assert [(r.group.multiplicity, r.votes) for r in ranked] == [(1, 2), (5, 1)]


def test_empty_patch_never_wins() -> None:
    candidates = [
        Candidate(id="empty", patch=""),
        Candidate(id="noise", patch="\n"),
        Candidate(id="real", patch=OTHER),
    ]
    groups = group_candidates(candidates)
    assert [g.member_ids for g in groups] == [("empty", "noise"), ("real",)]
    empty_key = groups[0].key
    results = {"t1": {empty_key: 0}, "t2": {empty_key: 0}}
    ranked = rank_candidates(groups, results, {"t1": 2, "t2": 2})
    assert [(r.group.is_empty, r.votes) for r in ranked] == [(False, 0), (True, 2)]


def test_top_k() -> None:
    candidates = [
        Candidate(id="a", patch=SMALL),
        Candidate(id="b", patch=OTHER),
        Candidate(id="c", patch=BIG),
    ]
    results = {"t": {key(BIG): 0}}
    best = top_k(candidates, results, {"t": 2}, k=2)
    assert [r.group.member_ids for r in best] == [("c",), ("a",)]
    assert len(top_k(candidates, results, {"t": 2}, k=10)) == 3
    with pytest.raises(ValueError):
        top_k(candidates, results, {"t": 2}, k=0)


@given(
    votes=st.lists(
        st.lists(st.sampled_from([0, 1, 2, TestOutcome.TIMED_OUT]), min_size=3, max_size=3),
        max_size=6,
    ),
    original=st.lists(st.sampled_from([0, 2]), min_size=6, max_size=6),
)
def test_ranking_is_sorted_by_votes_and_votes_are_counted_exactly(
    votes: list[list[object]], original: list[int]
) -> None:
    patches = [SMALL, OTHER, BIG]
    groups = group_candidates([Candidate(id=str(i), patch=p) for i, p in enumerate(patches)])
    results = {
        f"t{n}": {key(p): outcome for p, outcome in zip(patches, row)}
        for n, row in enumerate(votes)
    }
    orig = {f"t{n}": original[n] for n in range(len(votes))}
    ranked = rank_candidates(groups, results, orig)
    assert sorted(r.votes for r in ranked) == sorted(
        sum(1 for n, row in enumerate(votes) if original[n] != 0 and row[i] == 0) for i in range(3)
    )
    assert [r.votes for r in ranked] == sorted((r.votes for r in ranked), reverse=True)
