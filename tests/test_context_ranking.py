"""The ranking answer format, merging rankings by mean relative rank, and packing."""

from __future__ import annotations

import pytest

from codemonkeys.context.packing import PackItem, pack
from codemonkeys.context.ranking import (
    RankingItem,
    RankingPrompt,
    complete_ranking,
    mean_relative_ranks,
    merge_rankings,
    parse_ranking,
    render_ranking,
)
from codemonkeys.errors import ParseError

PATHS = ["a/x.py", "a/y.py", "b/z.py", "c.py"]


@pytest.mark.parametrize("order", [PATHS, PATHS[::-1], ["c.py"], ["b/z.py", "a/x.py"]])
def test_round_trip(order: list[str]) -> None:
    answer = parse_ranking(render_ranking(order), PATHS)
    assert list(answer.order) == order
    assert answer.unknown == () and answer.duplicates == ()


def test_lists_numbering_quotes_and_comments_are_tolerated() -> None:
    text = (
        "Thinking about it, the parser matters most.\n<ranking>\n"
        "1. `b/z.py`\n"
        "- a/x.py - defines the function\n"
        "* ./c.py\n"
        "\n"
        "a/y.py (120 tokens)\n"
        "</ranking>"
    )
    assert parse_ranking(text, PATHS).order == ("b/z.py", "a/x.py", "c.py", "a/y.py")


def test_unknown_and_repeated_paths_are_dropped_and_reported() -> None:
    answer = parse_ranking("<ranking>\nc.py\nnot/there.py\nc.py\na/x.py\n</ranking>", PATHS)
    assert answer.order == ("c.py", "a/x.py")
    assert answer.unknown == ("not/there.py",)
    assert answer.duplicates == ("c.py",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("c.py\na/x.py", "no <ranking>"),
        ("<ranking>\nc.py\n", "not closed"),
        ("<ranking>\nc.py\n</ranking>\n<ranking>\na/x.py\n</ranking>", "2 <ranking> blocks"),
        ("<ranking>\n</ranking>", "names none"),
        ("<ranking>\nelsewhere.py\n</ranking>", "unknown: elsewhere.py"),
    ],
)
def test_malformed_rankings_are_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_ranking(text, PATHS)


def test_missing_paths_are_appended_in_fallback_order() -> None:
    assert complete_ranking(["c.py", "zzz.py", "a/y.py"], PATHS) == [
        "c.py",
        "a/y.py",
        "a/x.py",
        "b/z.py",
    ]


def test_merge_by_mean_relative_rank() -> None:
    rankings = [
        ["a/x.py", "a/y.py", "b/z.py", "c.py"],  # ranks 0, 1/3, 2/3, 1
        ["b/z.py", "a/x.py", "c.py", "a/y.py"],  # ranks b/z 0, a/x 1/3, c 2/3, a/y 1
        ["b/z.py", "c.py"],  # completed: b/z, c, a/x, a/y -> 0, 1/3, 2/3, 1
    ]
    means = mean_relative_ranks(rankings, PATHS)
    assert means["a/x.py"] == pytest.approx((0 + 1 / 3 + 2 / 3) / 3)
    assert means["b/z.py"] == pytest.approx((2 / 3 + 0 + 0) / 3)
    assert means["c.py"] == pytest.approx((1 + 2 / 3 + 1 / 3) / 3)
    assert means["a/y.py"] == pytest.approx((1 / 3 + 1 + 1) / 3)
    assert merge_rankings(rankings, PATHS) == ["b/z.py", "a/x.py", "c.py", "a/y.py"]


def test_merge_ties_and_no_rankings_follow_the_fallback() -> None:
    assert merge_rankings([["c.py", "a/x.py"], ["a/x.py", "c.py"]], ["a/x.py", "c.py"]) == [
        "a/x.py",
        "c.py",
    ]
    assert merge_rankings([["c.py", "a/x.py"], ["a/x.py", "c.py"]], ["c.py", "a/x.py"]) == [
        "c.py",
        "a/x.py",
    ]
    assert merge_rankings([], PATHS) == PATHS
    assert merge_rankings([["c.py"]], ["c.py"]) == ["c.py"]
    assert merge_rankings([], []) == []


def test_ranking_requests_differ_only_by_sample_and_cache_the_summaries() -> None:
    prompt = RankingPrompt.load(max_tokens=500, temperature=0.0)
    items = [
        RankingItem("a/x.py", 120, "Defines x.\nUsed by y."),
        RankingItem("c.py", 40, "Constants."),
    ]
    first = prompt.request("the issue", items, 1000, 0)
    second = prompt.request("the issue", items, 1000, 1)
    assert first.messages == second.messages and first.system == second.system
    assert first.key("m") != second.key("m")
    (body,) = first.messages
    assert body.cache and first.system_cache
    assert body.content.index("the issue") < body.content.index(
        '<file path="a/x.py" tokens="120">\nDefines x.\nUsed by y.\n</file>'
    )
    assert "budget is 1000 tokens" in body.content
    assert "Rank all 2 files" in body.content


def test_packing_skips_a_file_that_does_not_fit_and_continues() -> None:
    ranked = [
        PackItem("big.py", 60),
        PackItem("huge.py", 500),
        PackItem("mid.py", 30),
        PackItem("small.py", 10),
    ]
    packing = pack(ranked, 100)
    assert [i.path for i in packing.included] == ["big.py", "mid.py", "small.py"]
    assert [i.path for i in packing.skipped] == ["huge.py"]
    assert packing.used == 100


def test_packing_counts_overhead_and_keeps_rank_order() -> None:
    ranked = [PackItem("a.py", 40), PackItem("b.py", 40), PackItem("c.py", 5)]
    packing = pack(ranked, 100, overhead=10)
    assert [i.path for i in packing.included] == ["a.py", "b.py"]
    assert [i.path for i in packing.skipped] == ["c.py"]  # 5 + 10 > 100 - 100
    assert packing.used == 100
    assert pack([], 10).included == []
    with pytest.raises(ValueError):
        pack(ranked, -1)
