"""The ranking answer format, merging rankings by mean relative rank, and packing."""

from __future__ import annotations

import pytest

from codemonkeys.context.packing import (
    EDITING_INSTRUCTIONS_TOKENS,
    PackItem,
    WindowReserve,
    pack,
    packing_budget,
    window_limit,
)
from codemonkeys.context.ranking import (
    PATH_LINE_TOKENS,
    RANKING_OUTPUT_CAP,
    RankingItem,
    RankingPrompt,
    lexical_order,
    lexical_terms,
    mean_relative_ranks,
    ranking_output_tokens,
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


def test_merge_by_mean_relative_rank_as_the_paper_merges() -> None:
    rankings = [
        ["a/x.py", "a/y.py", "b/z.py", "c.py"],  # i/4: 0, 1/4, 2/4, 3/4
        ["b/z.py", "a/x.py", "c.py", "a/y.py"],  # b/z 0, a/x 1/4, c 2/4, a/y 3/4
        ["b/z.py", "c.py"],  # b/z 0, c 1/2; a/x and a/y left out: 1.0
    ]
    means = mean_relative_ranks(rankings, PATHS)
    assert means["a/x.py"] == pytest.approx((0 + 1 / 4 + 1) / 3)
    assert means["b/z.py"] == pytest.approx((2 / 4 + 0 + 0) / 3)
    assert means["c.py"] == pytest.approx((3 / 4 + 2 / 4 + 1 / 2) / 3)
    assert means["a/y.py"] == pytest.approx((1 / 4 + 3 / 4 + 1) / 3)
    assert merge_rankings(rankings, PATHS) == ["b/z.py", "a/x.py", "c.py", "a/y.py"]


def test_files_no_run_names_are_left_out() -> None:
    rankings = [["c.py", "zzz.py", "a/y.py"], ["a/y.py"]]  # zzz.py is not relevant: ignored
    assert merge_rankings(rankings, PATHS) == ["a/y.py", "c.py"]
    assert set(mean_relative_ranks(rankings, PATHS)) == {"a/y.py", "c.py"}
    # A run naming only unknown paths counts as no run.
    assert merge_rankings([["nope.py"]], PATHS) == PATHS


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
    first = prompt.request("the issue", items, target=600, budget=1000, sample=0)
    second = prompt.request("the issue", items, target=600, budget=1000, sample=1)
    assert first.messages == second.messages and first.system == second.system
    assert first.key("m") != second.key("m")
    (body,) = first.messages
    assert body.cache and first.system_cache
    assert body.content.index("the issue") < body.content.index(
        '<file path="a/x.py" tokens="120">\nDefines x.\nUsed by y.\n</file>'
    )
    assert "about 600 tokens" in body.content and "never more than 1000 tokens" in body.content
    assert "leave out is not shown" in (first.system or "")


def test_the_output_limit_grows_with_the_files_to_list() -> None:
    prompt = RankingPrompt.load(max_tokens=2048, temperature=0.0)
    few = [RankingItem(f"f{i}.py", 10, "s") for i in range(3)]
    many = [RankingItem(f"f{i}.py", 10, "s") for i in range(200)]
    assert prompt.request("i", few, target=1, budget=2, sample=0).max_tokens == 2048 + 3 * PATH_LINE_TOKENS
    assert prompt.request("i", many, target=1, budget=2, sample=0).max_tokens == 2048 + 200 * PATH_LINE_TOKENS
    assert ranking_output_tokens(2048, 10_000) == RANKING_OUTPUT_CAP
    assert ranking_output_tokens(100, 0) == 100


def test_lexical_fallback_orders_by_similarity_to_the_issue_not_the_alphabet() -> None:
    assert lexical_terms("get_FooBar.py HTTPServer x2") == ["get", "foo", "bar", "py", "http", "server", "x", "2"]
    issue = "QuerySet.defer() crashes when combined with only(); see the SQL compiler."
    items = [
        RankingItem("a/admin.py", 10, "Admin site registration."),
        RankingItem("b/utils.py", 10, "Small helpers."),
        RankingItem("m/sql/compiler.py", 500, "The SQL compiler: turns a query into SQL."),
        RankingItem("m/query.py", 900, "QuerySet, with defer() and only() which the issue is about."),
    ]
    order = lexical_order(issue, items)
    assert order[:2] == ["m/query.py", "m/sql/compiler.py"]
    assert order != sorted(order)
    # No overlap at all: the smaller file first, then the given order, never the alphabet.
    flat = [RankingItem("z.py", 50, "x"), RankingItem("a.py", 90, "y"), RankingItem("m.py", 50, "w")]
    assert lexical_order("unrelated", flat) == ["z.py", "m.py", "a.py"]
    assert lexical_order("issue", []) == []


def test_packing_is_clamped_so_the_editing_conversation_fits_its_window() -> None:
    reserve = WindowReserve(window=200_000, max_output_tokens=8192, turns=8, turn_tokens=6000)
    limit = window_limit(reserve, issue_tokens=1000)
    assert limit == 200_000 - EDITING_INSTRUCTIONS_TOKENS - 1000 - 8 * 6000 - 8192
    assert packing_budget(128_000, limit) == 128_000  # the window leaves more than the cap
    small = WindowReserve(window=32_768, max_output_tokens=4096, turns=4, turn_tokens=3000)
    assert packing_budget(128_000, window_limit(small, 500)) == 32_768 - 1500 - 500 - 12_000 - 4096
    assert window_limit(WindowReserve(window=4000, max_output_tokens=4096, turns=1, turn_tokens=1), 0) == 0
    assert window_limit(WindowReserve(window=None, max_output_tokens=1, turns=1, turn_tokens=1), 0) is None
    assert packing_budget(128_000, None) == 128_000


def test_the_instructions_reserve_covers_the_editing_prompt() -> None:
    from codemonkeys.llm.tokens import count_tokens
    from codemonkeys.prompting import Prompt

    prompt = Prompt("generation.j2")
    instructions = prompt.render("editing_system", issue="", files=[])
    assert count_tokens(instructions, "anthropic:claude-sonnet-4-6") < EDITING_INSTRUCTIONS_TOKENS


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
