"""The context stage end to end with scripted models behind real gateways, a real repo and store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from context_support import (
    ISSUE,
    LIBRARY,
    Models,
    commit_files,
    counting_tokenizer,
    file_path,
    make_repo,
    make_stage,
    ranked_paths,
    ranking_in_order,
    relevance_by_path,
)

from codemonkeys.context.batch import run_many
from codemonkeys.context.gitread import GitObjects
from codemonkeys.context.ranking import render_ranking
from codemonkeys.context.result import load_result, read_packed
from codemonkeys.context.stage import PACK_OVERHEAD_TOKENS, ContextTask, ProgressEvent
from codemonkeys.context.packing import WindowReserve
from codemonkeys.errors import ContextUnreachable, EmptyContext, ProviderError
from codemonkeys.llm.scripted import ScriptedModel
from codemonkeys.llm.types import ChatRequest
from codemonkeys.store import RunStore

SUMMARIES = {
    "pkg/dates.py": "Defines parse_date,\nwhich splits on '-'.",
    "pkg/formats.py": "Calls parse_date in iso().",
}


def words(path: str) -> int:
    return len(str(LIBRARY[path]).split())


class Flaky:
    """Relevance: two relevant files, one file always malformed, one that fails until healed."""

    def __init__(self) -> None:
        self.healed = False
        self.base = relevance_by_path(SUMMARIES)

    def __call__(self, request: ChatRequest) -> str | ProviderError:
        path = file_path(request)
        if path == "pkg/util.py":
            return "It might be relevant, hard to say."
        if path == "docs/conf.py" and not self.healed:
            return ProviderError("connection reset")
        return self.base(request)


def rankings(request: ChatRequest) -> str:
    """Run 0 answers well, run 1 after one re-ask, run 2 never."""
    if request.sample == 1 and len(request.messages) == 1:
        return "formats first, then dates"
    if request.sample == 2:
        return "<ranking>\nsomewhere/else.py\n</ranking>"
    return ranking_in_order(["pkg/formats.py", "pkg/dates.py"])(request)


async def test_one_instance_with_parse_failures_errors_and_reasks(
    tmp_path: Path, run_store: RunStore
) -> None:
    commit = make_repo(tmp_path / "repo")
    run_store.add_instance("i1", "o/pkg", {})
    flaky = Flaky()
    models = Models(
        run_store,
        ScriptedModel(flaky, name="scripted:rel"),
        ScriptedModel(rankings, name="scripted:rank"),
    )
    events: list[ProgressEvent] = []
    stage = make_stage(run_store, models, events)
    task = ContextTask("i1", ISSUE, tmp_path / "repo", commit[:12])

    # A file whose model was not reached fails the stage as infrastructure: no ranking,
    # no generation on a partial context.
    with pytest.raises(ContextUnreachable, match="not reached for 1 of 6"):
        await stage.run(task)
    state = run_store.instance_states()[0]
    assert (state["stage"], state["status"], state["failure_kind"]) == ("context", "failed", "infra")
    partial = load_result(run_store, "i1")
    assert partial is not None and partial.included == [] and partial.relevant == ["pkg/dates.py", "pkg/formats.py"]
    assert models.ranking.calls == []
    assert events[-1].kind == "failed"

    decisions = {d.path: d for d in run_store.context_decisions("i1")}
    util = decisions["pkg/util.py"]
    assert util.status == "parse_failure" and util.relevant is None  # never silently "not relevant"
    assert json.loads(util.detail or "")["answers"] == ["It might be relevant, hard to say."] * 2
    assert decisions["pkg/dates.py"].summary == SUMMARIES["pkg/dates.py"]
    assert (
        decisions["pkg/__init__.py"].relevant is False
        and decisions["pkg/__init__.py"].status == "scored"
    )
    assert decisions["docs/conf.py"].status == "error"
    assert decisions["docs/conf.py"].detail.startswith("infra: ")  # type: ignore[union-attr]
    # 6 files, one re-asked, one failing.
    assert len(models.relevance.calls) == 7
    ledger = {row.group[0]: row for row in run_store.ledger(group_by=("stage",))}
    assert ledger["relevance"].calls == 7 and ledger["relevance"].failed_calls == 1
    assert [e.kind for e in events][:1] == ["enumerated"] and events[0].files == 6
    assert sum(e.files for e in events if e.kind == "file") == 6

    # A rerun retries the infrastructure failure only, then ranks and packs.
    flaky.healed = True
    result = await stage.run(task)
    assert len(models.relevance.calls) == 8
    assert file_path(models.relevance.calls[7].request) == "docs/conf.py"
    assert result.base_commit == commit
    assert result.files == 6 and [s["path"] for s in result.skipped] == [
        "pkg/blob.py",
        "pkg/huge.py",
    ]
    assert result.relevant == ["pkg/dates.py", "pkg/formats.py"]
    assert result.parse_failures == ["pkg/util.py"] and result.errors == []
    assert len(result.rankings) == 2 and len(result.ranking_failures) == 1
    assert "names none" in result.ranking_failures[0]
    assert result.ranked == ["pkg/formats.py", "pkg/dates.py"] and result.ranking_fallback == ""
    assert result.included_paths == ["pkg/formats.py", "pkg/dates.py"]
    assert (
        result.packed_tokens
        == words("pkg/formats.py") + words("pkg/dates.py") + 2 * PACK_OVERHEAD_TOKENS
    )
    assert result.complete
    assert load_result(run_store, "i1") == result
    with GitObjects(tmp_path / "repo") as objects:
        assert read_packed(result, objects) == [
            ("pkg/formats.py", LIBRARY["pkg/formats.py"]),
            ("pkg/dates.py", LIBRARY["pkg/dates.py"]),
        ]
    assert run_store.instance_states()[0]["status"] == "done"
    # ranking: 1 + 2 (one re-ask) + 3 (two re-asks).
    assert len(models.ranking.calls) == 6
    assert {c.request.sample for c in models.ranking.calls} == {0, 1, 2}
    assert events[-1].kind == "done" and events[-1].status == "done"

    # Stored rankings are reused.
    again = await stage.run(task)
    assert len(models.relevance.calls) == 8 and len(models.ranking.calls) == 6
    assert again.ranked == result.ranked


async def test_budget_skips_a_file_that_does_not_fit_and_packs_the_next(
    tmp_path: Path, run_store: RunStore
) -> None:
    make_repo(tmp_path / "repo")
    big = "word " * 200
    commit = commit_files(tmp_path / "repo", {"pkg/big.py": big})
    relevant = {
        **SUMMARIES,
        "pkg/big.py": "big",
        "pkg/util.py": "clamp",
        "pkg/__init__.py": "docstring",
    }
    order = ["pkg/dates.py", "pkg/big.py", "pkg/util.py", "pkg/__init__.py", "pkg/formats.py"]
    models = Models(
        run_store,
        ScriptedModel(relevance_by_path(relevant)),
        ScriptedModel(ranking_in_order(order)),
    )
    fits = ["pkg/dates.py", "pkg/util.py", "pkg/__init__.py"]
    budget = sum(words(p) for p in fits) + 3 * PACK_OVERHEAD_TOKENS + 10
    stage = make_stage(run_store, models, budget_tokens=budget, ranking_runs=2)
    result = await stage.run(ContextTask("i1", ISSUE, tmp_path / "repo", commit))
    assert result.ranked == order
    assert result.included_paths == fits
    assert result.not_fitting == ["pkg/big.py", "pkg/formats.py"]
    assert result.packed_tokens == budget - 10
    assert len(models.ranking.calls) == 2
    # The ranking model saw the packing token counts and the summaries.
    body = models.ranking.calls[0].request.messages[0].content
    assert '<file path="pkg/big.py" tokens="200">\nbig\n</file>' in body
    assert ranked_paths(models.ranking.calls[0].request) == sorted(relevant)


async def test_adding_instances_of_the_same_repo_reuses_scores_and_token_counts(
    tmp_path: Path, run_store: RunStore
) -> None:
    repo = tmp_path / "repo"
    first = make_repo(repo)
    second = commit_files(repo, {"pkg/util.py": "def clamp(x):\n    return x\n"})
    models = Models(
        run_store, ScriptedModel(relevance_by_path(SUMMARIES)), ScriptedModel(ranking_in_order([]))
    )
    tokenizer, seen = counting_tokenizer()
    stage = make_stage(run_store, models)
    stage.tokenizer = tokenizer
    a = ContextTask("a", ISSUE, repo, first)
    await stage.run(a)
    calls_after_a, tokenized_after_a = len(models.relevance.calls), len(seen)
    assert calls_after_a == 6 and tokenized_after_a == 7  # the binary file is never tokenized

    b = ContextTask("b", "Another issue about clamp().", repo, second)
    outcomes = await run_many(stage, [a, b], max_concurrent=2)

    assert [o.result is not None for o in outcomes] == [True, True]
    new_paths = [file_path(c.request) for c in models.relevance.calls[calls_after_a:]]
    # Instance a: no call at all; instance b: each of its six files once.
    assert sorted(new_paths) == [
        "docs/conf.py",
        "pkg/__init__.py",
        "pkg/dates.py",
        "pkg/formats.py",
        "pkg/test/helpers.py",
        "pkg/util.py",
    ]
    assert len(seen) - tokenized_after_a == 1  # only the changed pkg/util.py was tokenized again
    assert {d.instance_id for d in run_store.context_decisions("b")} == {"b"}


async def test_a_failing_instance_does_not_stop_the_others(
    tmp_path: Path, run_store: RunStore
) -> None:
    commit = make_repo(tmp_path / "repo")
    run_store.add_instance("bad", "o/pkg", {})
    models = Models(
        run_store, ScriptedModel(relevance_by_path(SUMMARIES)), ScriptedModel(ranking_in_order([]))
    )
    stage = make_stage(run_store, models)
    good = ContextTask("good", ISSUE, tmp_path / "repo", commit)
    bad = ContextTask("bad", ISSUE, tmp_path / "repo", "f" * 40)
    outcomes = await run_many(stage, [bad, good], max_concurrent=2)
    assert outcomes[0].result is None and outcomes[0].failure_kind == "infra"
    assert "is not in" in (outcomes[0].failure or "")
    assert outcomes[1].result is not None and outcomes[1].result.relevant == sorted(SUMMARIES)
    state = run_store.instance_states()[0]
    assert [state["instance_id"], state["status"], state["failure_kind"]] == [
        "bad",
        "failed",
        "infra",
    ]


async def test_no_relevant_file_fails_the_stage_as_the_models_failure(tmp_path: Path, run_store: RunStore) -> None:
    commit = make_repo(tmp_path / "repo")
    run_store.add_instance("i", "o/pkg", {})
    models = Models(run_store, ScriptedModel(relevance_by_path({})), ScriptedModel([]))
    with pytest.raises(EmptyContext, match="none of the 6 scored file"):
        await make_stage(run_store, models).run(ContextTask("i", ISSUE, tmp_path / "repo", commit))
    assert models.ranking.calls == []
    state = run_store.instance_states()[0]
    assert (state["stage"], state["status"], state["failure_kind"]) == ("context", "failed", "model")


async def test_unreadable_relevance_answers_fail_the_stage_as_the_models_failure(
    tmp_path: Path, run_store: RunStore
) -> None:
    commit = make_repo(tmp_path / "repo")
    models = Models(run_store, ScriptedModel(lambda r: "The file is not relevant."), ScriptedModel([]))
    with pytest.raises(EmptyContext, match="no answer could be read for any of 6"):
        await make_stage(run_store, models).run(ContextTask("i", ISSUE, tmp_path / "repo", commit))
    assert models.ranking.calls == []


async def test_an_unreachable_relevance_model_fails_the_stage_as_infrastructure(
    tmp_path: Path, run_store: RunStore
) -> None:
    commit = make_repo(tmp_path / "repo")
    models = Models(run_store, ScriptedModel(lambda r: ProviderError("connection refused")), ScriptedModel([]))
    with pytest.raises(ContextUnreachable, match="not reached for 6 of 6"):
        await make_stage(run_store, models).run(ContextTask("i", ISSUE, tmp_path / "repo", commit))


async def test_one_relevant_file_needs_no_ranking_call(tmp_path: Path, run_store: RunStore) -> None:
    commit = make_repo(tmp_path / "repo")
    one = {"pkg/dates.py": "the one"}
    models = Models(run_store, ScriptedModel(relevance_by_path(one)), ScriptedModel([render_ranking(["x"])]))
    result = await make_stage(run_store, models).run(
        ContextTask("j", ISSUE, tmp_path / "repo", commit)
    )
    assert result.included_paths == ["pkg/dates.py"] and models.ranking.calls == []
    assert result.ranking_fallback == ""


async def test_files_no_ranking_names_are_left_out(tmp_path: Path, run_store: RunStore) -> None:
    commit = make_repo(tmp_path / "repo")
    relevant = {**SUMMARIES, "pkg/util.py": "clamp"}
    models = Models(
        run_store, ScriptedModel(relevance_by_path(relevant)),
        ScriptedModel([render_ranking(["pkg/util.py", "pkg/dates.py"])] * 2),
    )
    result = await make_stage(run_store, models, ranking_runs=2, target_tokens=123).run(
        ContextTask("i", ISSUE, tmp_path / "repo", commit)
    )
    assert result.ranked == ["pkg/util.py", "pkg/dates.py"] and result.unranked == ["pkg/formats.py"]
    assert result.included_paths == ["pkg/util.py", "pkg/dates.py"]
    body = models.ranking.calls[0].request.messages[0].content
    assert "about 123 tokens" in body


async def test_when_every_ranking_fails_the_order_is_lexical_and_recorded(
    tmp_path: Path, run_store: RunStore
) -> None:
    commit = make_repo(tmp_path / "repo")
    relevant = {
        "docs/conf.py": "Sphinx settings.",
        "pkg/util.py": "clamp",
        "pkg/formats.py": "Calls parse_date in iso(); dates parsed with parse_date split on '-'.",
        "pkg/dates.py": "Defines parse_date.",
    }
    models = Models(run_store, ScriptedModel(relevance_by_path(relevant)), ScriptedModel(lambda r: "no idea"))
    result = await make_stage(run_store, models, ranking_runs=2).run(
        ContextTask("i", "parse_date('2024-01-02') splits wrongly; iso() is broken.", tmp_path / "repo", commit)
    )
    assert len(result.ranking_failures) == 2 and result.rankings == []
    assert result.ranking_fallback.startswith("lexical")
    assert result.ranked[:2] == ["pkg/formats.py", "pkg/dates.py"]
    assert result.ranked != sorted(result.ranked) and set(result.ranked) == set(relevant)
    assert load_result(run_store, "i").ranking_fallback == result.ranking_fallback  # type: ignore[union-attr]


async def test_every_ranking_run_unreachable_fails_the_stage_as_infrastructure(
    tmp_path: Path, run_store: RunStore
) -> None:
    commit = make_repo(tmp_path / "repo")
    models = Models(
        run_store, ScriptedModel(relevance_by_path(SUMMARIES)), ScriptedModel(lambda r: ProviderError("down"))
    )
    with pytest.raises(ContextUnreachable, match="ranking: every one of 2"):
        await make_stage(run_store, models, ranking_runs=2).run(ContextTask("i", ISSUE, tmp_path / "repo", commit))


async def test_packing_is_clamped_to_the_editing_window(tmp_path: Path, run_store: RunStore) -> None:
    commit = make_repo(tmp_path / "repo")
    models = Models(
        run_store, ScriptedModel(relevance_by_path(SUMMARIES)),
        ScriptedModel(ranking_in_order(["pkg/formats.py", "pkg/dates.py"])),
    )
    stage = make_stage(run_store, models, ranking_runs=1)
    issue_words = len(ISSUE.split())
    first = words("pkg/formats.py") + PACK_OVERHEAD_TOKENS
    # Room for exactly the first file once instructions, issue, 2 turns and the output are set aside.
    stage.reserve = WindowReserve(
        window=100 + issue_words + 2 * 50 + 300 + first, max_output_tokens=300, turns=2, turn_tokens=50,
        instructions_tokens=100,
    )
    result = await stage.run(ContextTask("i", ISSUE, tmp_path / "repo", commit))
    assert result.window_limit_tokens == first and result.budget_tokens == first
    assert result.included_paths == ["pkg/formats.py"] and result.not_fitting == ["pkg/dates.py"]
    # The ranker was told the clamped cap, and a target no larger.
    body = models.ranking.calls[0].request.messages[0].content
    assert f"about {first} tokens" in body and f"never more than {first} tokens" in body
    # No room at all: the stage fails rather than hand generation nothing.
    stage.reserve = WindowReserve(window=10, max_output_tokens=300, turns=2, turn_tokens=50)
    with pytest.raises(EmptyContext, match="fits the packing budget of 0"):
        await stage.run(ContextTask("i", ISSUE, tmp_path / "repo", commit))
