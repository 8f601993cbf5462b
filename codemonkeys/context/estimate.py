"""What reading every file will cost, before any model is called.

Per instance: the files that would be read, the prompt tokens of their
relevance calls, how many of those tokens are a prefix shared by all of the
instance's calls (instructions + issue), and the projected cost: the worst
case (every prompt token at full price, every answer at its maximum length)
and the same with the shared prefix read from a prompt cache. Ranking is a
handful of calls over the summaries, whose size is unknown before the
relevance answers exist; it is counted in calls, not priced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..llm.pricing import PriceTable, price_cost
from ..llm.types import Usage
from ..store.protocols import TokenCountCache
from .files import FileFilter, Tokenizer, enumerate_files
from .gitread import GitObjects
from .relevance import RelevancePrompt
from .stage import ContextTask


@dataclass(frozen=True, slots=True)
class InstanceEstimate:
    """The relevance calls of one instance, counted without calling a model."""

    instance_id: str
    files: int
    skipped: int
    file_tokens: int
    prompt_tokens: int
    shared_prefix_tokens: int  # summed over calls: (system + issue) x files
    system_tokens: int  # per call: the part shared by every instance
    max_output_tokens: int  # summed over calls
    ranking_calls: int
    worst_case_usd: float | None
    cached_prefix_usd: float | None
    tokenized: int  # blobs tokenized now (not from the cache)

    @property
    def shared_share(self) -> float:
        return self.shared_prefix_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


def estimate_instance(
    task: ContextTask,
    *,
    file_filter: FileFilter,
    tokenizer: Tokenizer,
    cache: TokenCountCache,
    prompt: RelevancePrompt,
    prices: PriceTable,
    model: str,
    max_file_tokens: int,
    ranking_runs: int,
) -> InstanceEstimate:
    """Enumerate and count; nothing is sent to a model."""
    with GitObjects(task.repo_path) as objects:
        listing = enumerate_files(
            objects,
            task.base_commit,
            file_filter,
            tokenizer,
            cache,
            max_file_tokens=max_file_tokens,
        )
    paths = [c.path for c in listing.candidates]
    system_tokens, issue_tokens, *overheads = tokenizer.count_many(
        [
            prompt.system,
            prompt.issue_part(task.problem_statement),
            *(prompt.file_part(p, "") for p in paths),
        ]
    )
    calls = len(paths)
    file_tokens = sum(c.tokens for c in listing.candidates)
    prefix = system_tokens + issue_tokens
    prompt_tokens = calls * prefix + file_tokens + sum(overheads)
    output = calls * prompt.max_tokens
    worst = prices.worst_case(model, prompt_tokens, output)
    price = prices.lookup(model)
    cached = None
    if price is not None and calls:
        usage = Usage(
            input_tokens=prompt_tokens - calls * prefix,
            output_tokens=output,
            cache_write_tokens=prefix,
            cache_read_tokens=prefix * (calls - 1),
        )
        cached = price_cost(price, usage)
    elif price is not None:
        cached = 0.0
    return InstanceEstimate(
        instance_id=task.instance_id,
        files=calls,
        skipped=len(listing.skipped),
        file_tokens=file_tokens,
        prompt_tokens=prompt_tokens,
        shared_prefix_tokens=calls * prefix,
        system_tokens=system_tokens,
        max_output_tokens=output,
        ranking_calls=ranking_runs if calls > 1 else 0,
        worst_case_usd=worst,
        cached_prefix_usd=cached,
        tokenized=listing.tokenized,
    )


@dataclass(frozen=True, slots=True)
class EstimateTotal:
    instances: int
    files: int
    prompt_tokens: int
    shared_prefix_tokens: int
    worst_case_usd: float | None
    cached_prefix_usd: float | None


def total(estimates: Sequence[InstanceEstimate]) -> EstimateTotal:
    """Sums over instances; a cost is ``None`` when any instance's model is unpriced."""

    def money(values: list[float | None]) -> float | None:
        return None if any(v is None for v in values) else sum(v for v in values if v is not None)

    return EstimateTotal(
        instances=len(estimates),
        files=sum(e.files for e in estimates),
        prompt_tokens=sum(e.prompt_tokens for e in estimates),
        shared_prefix_tokens=sum(e.shared_prefix_tokens for e in estimates),
        worst_case_usd=money([e.worst_case_usd for e in estimates]),
        cached_prefix_usd=money([e.cached_prefix_usd for e in estimates]),
    )
