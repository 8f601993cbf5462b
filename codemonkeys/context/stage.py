"""The context stage for one instance: read every file, rank the relevant ones, pack them.

Plain inputs (issue text, a git repository and a base commit), so it runs
without SWE-bench tooling. Every file's decision is written to the store as
soon as it is made, keyed by (instance, path, blob sha, model, prompt
version): a rerun only scores what is missing or failed for an
infrastructure reason. A failing file or ranking run is recorded; the stage
then fails by cause rather than hand generation a partial or empty context:
a file whose model was not reached fails it as infrastructure (a rerun scores
only what is missing), no readable relevance answer or no relevant file as
the model's failure. When every ranking run fails for the model's reasons
the order falls back to lexical similarity, recorded in the result. The
instance's state is recorded either way and a failure re-raised.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol

from ..config import ContextConfig
from ..errors import BudgetExceeded, ContextUnreachable, EmptyContext, FailureKind, failure_kind
from ..llm.types import CallTag, Usage
from ..store.protocols import ContextStore
from ..store.records import ContextDecision
from .asking import AnswerUnreadable, ChatGateway, ask
from .files import Candidate, FileFilter, Tokenizer, count_blob_tokens, decode, enumerate_files
from .gitread import GitObjects
from .packing import PackItem, WindowReserve, pack, packing_budget, window_limit
from .ranking import (
    RankingItem,
    RankingPrompt,
    lexical_order,
    mean_relative_ranks,
    merge_rankings,
    parse_ranking,
)
from .relevance import RelevancePrompt, parse_answer
from .result import STAGE, ContextResult, PackedFile, save_result

log = logging.getLogger(__name__)

RELEVANCE = "relevance"
RANKING = "ranking"
SCORED = "scored"
PARSE_FAILURE = "parse_failure"
ERROR = "error"
# Tokens a packed file costs beyond its content (path header and delimiters).
PACK_OVERHEAD_TOKENS = 16


@dataclass(frozen=True, slots=True)
class ContextTask:
    """One instance's input: the issue and the repository state it was filed against."""

    instance_id: str
    problem_statement: str
    repo_path: Path
    base_commit: str


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """Something the stage did, for progress bars: ``files`` counts files to score or scored."""

    instance_id: str
    kind: Literal["enumerated", "file", "ranking", "done", "failed"]
    files: int = 0
    model: str = ""
    usage: Usage = field(default_factory=Usage)
    cached: bool = False
    status: str = ""


def model_key(name: str) -> str:
    """A model string without its server (``provider:name``): decisions stay valid when the server moves."""
    return name.partition("@")[0]


class GatewaySource(Protocol):
    """Hands out the gateway of a stage for an instance (the run's ModelHub)."""

    def gateway(self, stage: str, instance_id: str | None = None) -> ChatGateway: ...


class ContextStage:
    """Runs the context stage for instances; shareable across concurrent instances."""

    def __init__(
        self,
        *,
        config: ContextConfig,
        models: GatewaySource,
        store: ContextStore,
        relevance_prompt: RelevancePrompt,
        ranking_prompt: RankingPrompt,
        tokenizer: Tokenizer,
        pack_tokenizer: Tokenizer,
        progress: Callable[[ProgressEvent], None] | None = None,
        reserve: WindowReserve | None = None,
    ) -> None:
        self.config = config
        self.reserve = reserve
        self.models = models
        self.store = store
        self.relevance_prompt = relevance_prompt
        self.ranking_prompt = ranking_prompt
        self.tokenizer = tokenizer
        self.pack_tokenizer = pack_tokenizer
        self.file_filter = FileFilter.from_config(config)
        self._progress = progress or (lambda event: None)
        self._slots = asyncio.Semaphore(config.concurrency)

    async def run(self, task: ContextTask) -> ContextResult:
        """The instance's context; records the instance's state either way."""
        try:
            result = await self._run(task)
        except Exception as exc:
            self.store.set_instance_state(
                task.instance_id, STAGE, "failed", str(failure_kind(exc)), str(exc)[:2000]
            )
            self._progress(ProgressEvent(task.instance_id, "failed", status=str(exc)[:200]))
            raise
        self.store.set_instance_state(
            task.instance_id, STAGE, "done" if result.complete else "incomplete"
        )
        self._progress(
            ProgressEvent(
                task.instance_id, "done", status="done" if result.complete else "incomplete"
            )
        )
        return result

    async def _run(self, task: ContextTask) -> ContextResult:
        relevance = self.models.gateway(RELEVANCE, task.instance_id)
        ranking = self.models.gateway(RANKING, task.instance_id)
        with GitObjects(task.repo_path) as objects:
            commit = await asyncio.to_thread(objects.resolve, task.base_commit)
            listing = await asyncio.to_thread(
                enumerate_files,
                objects,
                commit,
                self.file_filter,
                self.tokenizer,
                self.store,
                max_file_tokens=self.config.max_file_tokens,
            )
            result = ContextResult(
                instance_id=task.instance_id,
                base_commit=commit,
                relevance_model=model_key(relevance.name),
                ranking_model=model_key(ranking.name),
                relevance_prompt=self.relevance_prompt.version,
                ranking_prompt=self.ranking_prompt.version,
                files=len(listing.candidates),
                file_tokens=sum(c.tokens for c in listing.candidates),
                skipped=[
                    {"path": s.path, "reason": s.reason, "tokens": s.tokens}
                    for s in listing.skipped
                ],
                budget_tokens=self.config.budget_tokens,
            )
            decisions = await self._decide(task, listing.candidates, relevance, objects)
            for candidate in listing.candidates:
                decision = decisions[candidate.path]
                if decision.status == PARSE_FAILURE:
                    result.parse_failures.append(candidate.path)
                elif decision.status == ERROR:
                    result.errors.append({"path": candidate.path, "error": decision.detail or ""})
            relevant = [c for c in listing.candidates if decisions[c.path].relevant]
            result.relevant = [c.path for c in relevant]
            self._check_relevance(result, decisions)
            pack_tokens, _ = await asyncio.to_thread(
                count_blob_tokens,
                objects,
                [c.blob for c in relevant],
                self.pack_tokenizer,
                self.store,
            )
        items = [
            RankingItem(c.path, pack_tokens[c.blob], decisions[c.path].summary or "")
            for c in relevant
        ]
        limit = None
        if self.reserve is not None:
            issue_tokens = self.pack_tokenizer.count_many([task.problem_statement])[0]
            limit = window_limit(self.reserve, issue_tokens)
        result.window_limit_tokens = limit
        cap = packing_budget(self.config.budget_tokens, limit)
        result.target_tokens = min(self.config.target_tokens, cap)
        await self._rank(task, items, ranking, result, cap)
        by_path = {c.path: c for c in relevant}
        if result.ranking_fallback:  # no ranker chose a subset: read about what it would have
            cap = result.target_tokens
        result.budget_tokens = cap
        packing = pack(
            [PackItem(path, pack_tokens[by_path[path].blob]) for path in result.ranked],
            cap,
            overhead=PACK_OVERHEAD_TOKENS,
        )
        result.included = [
            PackedFile(i.path, by_path[i.path].blob, i.tokens) for i in packing.included
        ]
        result.not_fitting = [item.path for item in packing.skipped]
        result.packed_tokens = packing.used
        result.complete = not result.errors and result.complete
        save_result(self.store, result)
        if not result.included:
            raise EmptyContext(
                f"none of the {len(result.ranked)} ranked file(s) fits the packing budget of {cap} tokens"
                + (f" (the editing model's window leaves {limit})" if limit is not None else "")
            )
        return result

    def _check_relevance(self, result: ContextResult, decisions: dict[str, ContextDecision]) -> None:
        """Fail the instance here, by cause, rather than let generation start on a partial or empty context.

        A file whose model could not be reached fails the stage as infrastructure
        (a rerun scores only the missing files); a stopped budget as budget; no
        readable answer, or no relevant file, as the model's failure.
        """
        kinds = [e["error"].split(":", 1)[0] for e in result.errors]
        first = result.errors[0]["error"][:300] if result.errors else ""
        if str(FailureKind.INFRA) in kinds:
            save_result(self.store, result)
            raise ContextUnreachable(
                f"relevance: the model was not reached for {kinds.count(str(FailureKind.INFRA))} of "
                f"{result.files} file(s) ({first})"
            )
        if str(FailureKind.BUDGET) in kinds:
            save_result(self.store, result)
            raise BudgetExceeded(f"relevance: {kinds.count(str(FailureKind.BUDGET))} file(s) not scored ({first})")
        if result.relevant:
            return
        save_result(self.store, result)
        scored = sum(1 for d in decisions.values() if d.status == SCORED)
        if not scored:
            raise EmptyContext(
                f"relevance: no answer could be read for any of {result.files} file(s) "
                f"({len(result.parse_failures)} unreadable, {len(result.errors)} failed)"
            )
        raise EmptyContext(f"relevance: none of the {scored} scored file(s) was judged relevant")

    # --- relevance --------------------------------------------------------------

    async def _decide(
        self,
        task: ContextTask,
        candidates: list[Candidate],
        gateway: ChatGateway,
        objects: GitObjects,
    ) -> dict[str, ContextDecision]:
        """A decision for every candidate: from the store when already made, else from the model."""
        model, version = model_key(gateway.name), self.relevance_prompt.version
        known = {
            (d.path, d.content_hash): d
            for d in self.store.context_decisions(task.instance_id, model, version)
            if d.status in (SCORED, PARSE_FAILURE)
        }
        decisions: dict[str, ContextDecision] = {}
        todo: list[Candidate] = []
        for candidate in candidates:
            found = known.get((candidate.path, candidate.blob))
            if found is None:
                todo.append(candidate)
            else:
                decisions[candidate.path] = found
        self._progress(ProgressEvent(task.instance_id, "enumerated", files=len(candidates)))
        if decisions:
            self._progress(
                ProgressEvent(
                    task.instance_id, "file", files=len(decisions), model=model, cached=True
                )
            )
        if todo:
            contents = await asyncio.to_thread(objects.read_blobs, [c.blob for c in todo])
            scored = await asyncio.gather(
                *(self._score(task, c, decode(contents[c.blob]), gateway) for c in todo)
            )
            decisions.update((d.path, d) for d in scored)
        return decisions

    async def _score(
        self, task: ContextTask, candidate: Candidate, content: str, gateway: ChatGateway
    ) -> ContextDecision:
        """One file's decision; every failure becomes a recorded decision, never an exception."""
        base = ContextDecision(
            instance_id=task.instance_id,
            path=candidate.path,
            content_hash=candidate.blob,
            model=model_key(gateway.name),
            prompt_version=self.relevance_prompt.version,
            status=ERROR,
            tokens=candidate.tokens,
        )
        usage = Usage()
        cached = False
        async with self._slots:
            try:
                request = self.relevance_prompt.request(
                    task.problem_statement, candidate.path, content
                )
                tag = CallTag(RELEVANCE, task.instance_id)
                answer = await ask(
                    gateway,
                    request,
                    tag,
                    parse_answer,
                    reasks=self.config.relevance_reasks,
                    reask_prompt=self.relevance_prompt.reask,
                )
                usage = answer.usage
                cached = all(r.cached for r in answer.responses)
                decision = replace(
                    base,
                    status=SCORED,
                    relevant=answer.value.relevant,
                    summary=answer.value.summary,
                )
            except AnswerUnreadable as exc:
                usage = exc.usage
                detail = json.dumps({"error": str(exc), "answers": [a[:4000] for a in exc.answers]})
                decision = replace(base, status=PARSE_FAILURE, detail=detail)
                log.info("%s %s: %s", task.instance_id, candidate.path, exc)
            except Exception as exc:  # noqa: BLE001 - the file boundary: one file never ends the stage
                decision = replace(base, detail=f"{failure_kind(exc)}: {exc}"[:2000])
                log.warning(
                    "%s %s: %s: %s", task.instance_id, candidate.path, type(exc).__name__, exc
                )
        self.store.put_context_decision(decision)
        self._progress(
            ProgressEvent(
                task.instance_id,
                "file",
                files=1,
                model=gateway.name,
                usage=usage,
                cached=cached,
                status=decision.status,
            )
        )
        return decision

    # --- ranking ----------------------------------------------------------------

    async def _rank(
        self,
        task: ContextTask,
        items: list[RankingItem],
        gateway: ChatGateway,
        result: ContextResult,
        cap: int,
    ) -> None:
        """Rank ``items`` ``ranking_runs`` times (against ``result.target_tokens``, at most ``cap``) and merge; failed runs are recorded and left out.

        Files no successful run names are left out. When every run fails the
        order is lexical similarity to the issue, and that is recorded; when
        every run fails and one could not reach the model, the stage fails as
        infrastructure (a rerun may rank).
        """
        fallback = lexical_order(task.problem_statement, items)
        if len(items) <= 1:
            result.ranked = fallback
            result.mean_ranks = mean_relative_ranks([], fallback)
            return
        runs = self.config.ranking_runs
        target = result.target_tokens
        first = await self._rank_once(task, items, gateway, 0, target, cap)
        rest = await asyncio.gather(
            *(self._rank_once(task, items, gateway, i, target, cap) for i in range(1, runs))
        )
        infra = False
        for outcome in (first, *rest):
            if isinstance(outcome, list):
                result.rankings.append(outcome)
            else:
                result.ranking_failures.append(outcome.message)
                if outcome.infra:
                    result.complete = False
                    infra = True
        if not result.rankings:
            if infra:
                save_result(self.store, result)
                raise ContextUnreachable(
                    f"ranking: every one of {runs} run(s) failed ({result.ranking_failures[0][:300]})"
                )
            result.ranking_fallback = (
                f"lexical: every one of {runs} ranking run(s) failed; files ordered by BM25 "
                "similarity of path and summary to the issue"
            )
            log.warning("%s: %s", task.instance_id, result.ranking_fallback)
        result.ranked = merge_rankings(result.rankings, fallback)
        result.unranked = [path for path in fallback if path not in set(result.ranked)]
        result.mean_ranks = {
            p: round(v, 6) for p, v in mean_relative_ranks(result.rankings, fallback).items()
        }

    async def _rank_once(
        self,
        task: ContextTask,
        items: list[RankingItem],
        gateway: ChatGateway,
        sample: int,
        target: int,
        cap: int,
    ) -> list[str] | RankFailure:
        """Run ``sample`` of the ranking, reusing a stored run of the same request."""
        request = self.ranking_prompt.request(
            task.problem_statement,
            items,
            target=target,
            budget=cap,
            sample=sample,
        )
        key = f"ranking/{request.key(model_key(gateway.name))}"
        stored = self.store.get_result(task.instance_id, STAGE, key)
        if stored is not None:
            return list(stored["order"])
        known = [item.path for item in items]
        usage = Usage()
        try:
            answer = await ask(
                gateway,
                request,
                CallTag(RANKING, task.instance_id, f"ranking-{sample}"),
                lambda text: parse_ranking(text, known),
                reasks=self.config.ranking_reasks,
                reask_prompt=self.ranking_prompt.reask,
            )
        except AnswerUnreadable as exc:
            self._progress(
                ProgressEvent(
                    task.instance_id,
                    "ranking",
                    model=gateway.name,
                    usage=exc.usage,
                    status=PARSE_FAILURE,
                )
            )
            return RankFailure(f"run {sample}: {exc}", infra=False)
        except Exception as exc:  # noqa: BLE001 - a failed run is recorded and left out of the merge
            log.warning(
                "%s ranking run %d: %s: %s", task.instance_id, sample, type(exc).__name__, exc
            )
            self._progress(
                ProgressEvent(
                    task.instance_id, "ranking", model=gateway.name, usage=usage, status=ERROR
                )
            )
            return RankFailure(f"run {sample}: {failure_kind(exc)}: {exc}", infra=True)
        value = answer.value
        if value.unknown or value.duplicates:
            log.warning(
                "%s ranking run %d: ignored unknown %s, repeated %s",
                task.instance_id,
                sample,
                list(value.unknown)[:5],
                list(value.duplicates)[:5],
            )
        self.store.put_result(
            task.instance_id,
            STAGE,
            key,
            {
                "sample": sample,
                "order": list(value.order),
                "unknown": list(value.unknown),
                "attempts": answer.attempts,
            },
        )
        self._progress(
            ProgressEvent(
                task.instance_id, "ranking", model=gateway.name, usage=answer.usage, status=SCORED
            )
        )
        return list(value.order)


@dataclass(frozen=True, slots=True)
class RankFailure:
    """A ranking run that produced no ranking; ``infra`` failures make the result incomplete."""

    message: str
    infra: bool
