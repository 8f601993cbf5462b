"""The estimate: files, prompt tokens and cost, without calling a model."""

from __future__ import annotations

from pathlib import Path

import pytest
from context_support import ISSUE, counting_tokenizer, make_repo

from codemonkeys.config import ContextConfig, Price
from codemonkeys.context.estimate import estimate_instance, total
from codemonkeys.context.files import FileFilter, MemoryTokenCache, decode
from codemonkeys.context.gitread import GitObjects
from codemonkeys.context.relevance import RelevancePrompt
from codemonkeys.context.stage import ContextTask
from codemonkeys.llm.pricing import PriceTable

PRICE = Price(input=1.0, output=2.0, cache_read=0.1, cache_write=1.25)


def estimate(tmp_path: Path, commit: str, prices: PriceTable, model: str = "priced"):  # type: ignore[no-untyped-def]
    tokenizer, _ = counting_tokenizer()
    return estimate_instance(
        ContextTask("i1", ISSUE, tmp_path / "repo", commit),
        file_filter=FileFilter(),
        tokenizer=tokenizer,
        cache=MemoryTokenCache(),
        prompt=RelevancePrompt.load(max_tokens=100, temperature=0.0),
        prices=prices,
        model=model,
        max_file_tokens=1000,
        ranking_runs=3,
    )


def test_estimate_counts_exactly_the_prompts_the_stage_would_send(tmp_path: Path) -> None:
    commit = make_repo(tmp_path / "repo")
    result = estimate(tmp_path, commit, PriceTable({"priced": PRICE}))
    prompt = RelevancePrompt.load(max_tokens=100, temperature=0.0)
    with GitObjects(tmp_path / "repo") as objects:
        tokenizer, _ = counting_tokenizer()
        files = FileFilter().select([e.path for e in objects.list_files(commit)])
        contents = {
            p: decode(
                objects.read_blob(next(e.blob for e in objects.list_files(commit) if e.path == p))
            )
            for p in files
        }
    sent = 0
    for path, content in contents.items():
        if path == "pkg/huge.py" or path == "pkg/blob.py":
            continue
        request = prompt.request(ISSUE, path, content)
        sent += sum(
            tokenizer.count_many([request.system or "", *(m.content for m in request.messages)])
        )
    assert result.files == 6 and result.skipped == 2
    assert result.prompt_tokens == sent
    prefix = sum(tokenizer.count_many([prompt.system, prompt.issue_part(ISSUE)]))
    assert result.shared_prefix_tokens == 6 * prefix
    assert 0 < result.shared_share < 1
    assert result.max_output_tokens == 600 and result.ranking_calls == 3
    assert result.worst_case_usd == pytest.approx((sent * 1.25 + 600 * 2.0) / 1e6)
    cached = ((sent - 6 * prefix) * 1.0 + prefix * 1.25 + 5 * prefix * 0.1 + 600 * 2.0) / 1e6
    assert result.cached_prefix_usd == pytest.approx(cached)
    assert result.cached_prefix_usd < result.worst_case_usd


def test_unpriced_models_are_never_priced_at_zero(tmp_path: Path) -> None:
    commit = make_repo(tmp_path / "repo")
    unpriced = estimate(
        tmp_path, commit, PriceTable({}), model="openai-compatible:qwen@http://h/v1"
    )
    priced = estimate(tmp_path, commit, PriceTable({"priced": PRICE}))
    assert unpriced.worst_case_usd is None and unpriced.cached_prefix_usd is None
    summed = total([priced, priced])
    assert summed.files == 12 and summed.worst_case_usd == pytest.approx(
        2 * (priced.worst_case_usd or 0)
    )
    assert total([priced, unpriced]).worst_case_usd is None


def test_default_config_filter_matches_the_file_filter() -> None:
    assert FileFilter.from_config(ContextConfig()) == FileFilter()
