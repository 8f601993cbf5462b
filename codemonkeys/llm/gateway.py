"""The gateway every stage calls: one model behind the response cache, limits, budget and ledger.

Order of a call: response cache (a hit is free and recorded as cached), budget
reservation at worst-case cost, a ledger row recording the call as *started*
at that worst case, provider limiter slot, the provider call, then one store
transaction that settles the row with the real usage and writes the cache
entry. Failed calls are settled too (with their error), so the ledger tells
infrastructure trouble apart from spending. A call cancelled in flight, or
whose process is killed, keeps its started row: it counts at its worst case
until a later attempt gets the same request answered (see ``RunStore.ledger``).

The worst case is a true upper bound: the request's prompt counted with the
real tokenizer (:func:`reserved_prompt_tokens`, with a safety margin for the
counter's approximation per provider) plus its full ``max_tokens``, at the
model's prices.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import replace
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Protocol

from ..errors import CodeMonkeysError, ProviderError, failure_kind
from ..store.protocols import CallLedger
from ..store.records import CallRecord
from .pricing import PriceTable
from .tokens import count_tokens
from .types import CallTag, ChatRequest, ChatResponse, Model

log = logging.getLogger(__name__)


class Limiter(Protocol):
    """Client-side rate limits of one provider (in flight, requests and tokens per minute).

    ``slot(tokens)`` is entered around one call with the estimated tokens; it may
    yield an object with ``settle(actual_tokens)``, which the gateway calls with
    the real usage so the limiter can free what the estimate over-reserved.
    """

    def slot(self, tokens: int) -> AbstractAsyncContextManager[object]: ...


class SpendGuard(Protocol):
    """Live budget enforcement: a call may start only if its worst case still fits."""

    def reserve(self, tag: CallTag, worst_case_usd: float | None) -> object:
        """Hold ``worst_case_usd`` for a call about to start; raises BudgetExceeded."""
        ...

    def settle(self, reservation: object, actual_usd: float | None) -> None:
        """Replace a reservation by what the call really cost (``None``: unpriced or failed)."""
        ...


def approx_tokens(text: str) -> int:
    """A cheap rough estimate (4 characters per token), for planning only: never for a budget.

    On code it undercounts (52k against the tokenizer's 58k on this repository).
    """
    return len(text) // 4 + 1


# Safety margin on :func:`~codemonkeys.llm.tokens.count_tokens`, per provider, so that a
# reservation bounds what the provider will bill. ``openai``: cl100k is exact for the GPT-4
# family and overestimates o200k models; 5% covers the chat format's hidden tokens.
# ``openai-compatible``: open models' tokenizers are within about 10% of cl100k on code, and
# their chat templates add role markers: 20%. ``anthropic`` (and anything else): the count
# is already cl100k x 1.2, an assumption from published comparisons (Claude needs 10-30%
# more tokens than cl100k); the margin takes it to 1.44 x cl100k, above the worst reported.
RESERVE_MARGIN = {"openai": 1.05, "openai-compatible": 1.2}
DEFAULT_RESERVE_MARGIN = 1.2
# Tokens the wire format adds around each message (role markers) and around the request.
MESSAGE_OVERHEAD_TOKENS = 8
REQUEST_OVERHEAD_TOKENS = 16


@functools.lru_cache(maxsize=8192)
def _block_tokens(text: str, model: str) -> int:
    """Tokens of one prompt block; memoized because a conversation resends its earlier turns."""
    return count_tokens(text, model)


def reserved_prompt_tokens(request: ChatRequest, model: str) -> int:
    """An upper bound of the prompt tokens ``model`` bills for ``request`` (system and every message)."""
    blocks = ([request.system] if request.system else []) + [m.content for m in request.messages]
    counted = sum(_block_tokens(block, model) for block in blocks)
    margin = RESERVE_MARGIN.get(model.partition(":")[0], DEFAULT_RESERVE_MARGIN)
    overhead = REQUEST_OVERHEAD_TOKENS + MESSAGE_OVERHEAD_TOKENS * len(blocks)
    return math.ceil(counted * margin) + overhead


class Gateway:
    """Implements :class:`~codemonkeys.llm.types.Model`-like calls with bookkeeping.

    ``complete`` takes a :class:`CallTag` naming the stage, instance and
    trajectory, so every call lands in the ledger under the right heading.
    """

    def __init__(
        self,
        model: Model,
        ledger: CallLedger,
        prices: PriceTable,
        *,
        limiter: Limiter | None = None,
        budget: SpendGuard | None = None,
        use_cache: bool = True,
        prompt_tokens: Callable[[ChatRequest, str], int] = reserved_prompt_tokens,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.model = model
        self._ledger = ledger
        self._prices = prices
        self._limiter = limiter
        self._budget = budget
        self._use_cache = use_cache
        self._prompt_tokens = prompt_tokens
        self._clock = clock

    @property
    def name(self) -> str:
        return self.model.name

    async def complete(self, request: ChatRequest, tag: CallTag) -> ChatResponse:
        """Answer ``request``: from the cache when possible, else from the model."""
        name = self.model.name
        key = request.key(name)
        if self._use_cache:
            blob = self._ledger.cached_response(key)
            if blob is not None:
                response = ChatResponse.from_json(blob)
                self._ledger.record_call(_record(tag, key, name, response, cost=0.0, latency=0.0, cached=True))
                return ChatResponse(response.text, response.usage, response.stop_reason, response.model, cached=True)

        prompt_tokens = self._prompt_tokens(request, name)
        worst = self._prices.worst_case(name, prompt_tokens, request.max_tokens)
        reservation = self._budget.reserve(tag, worst) if self._budget is not None else None
        call_id = self._ledger.start_call(
            CallRecord(
                stage=tag.stage, instance_id=tag.instance_id, trajectory=tag.trajectory, request_hash=key,
                model=name, ts=time.time(), state="started", reserved_usd=worst,
            )
        )
        slot = self._limiter.slot(prompt_tokens + request.max_tokens) if self._limiter else nullcontext()
        start = self._clock()
        sent = False
        try:
            async with slot as permit:
                sent = True
                response = await self.model.complete(request)
                settle = getattr(permit, "settle", None)
                if settle is not None:
                    usage = response.usage
                    settle(usage.prompt_tokens + usage.output_tokens)
        except Exception as exc:
            latency = self._clock() - start
            error = exc if isinstance(exc, CodeMonkeysError) else ProviderError(f"{type(exc).__name__}: {exc}")
            # A request that reached the provider and lost its answer may have been billed:
            # it is booked at its worst case, never at $0.
            billed = worst if getattr(error, "maybe_billed", False) else None
            if reservation is not None and self._budget is not None:
                self._budget.settle(reservation, billed)
            self._ledger.finish_call(
                call_id,
                CallRecord(
                    stage=tag.stage,
                    instance_id=tag.instance_id,
                    trajectory=tag.trajectory,
                    request_hash=key,
                    model=name,
                    latency_s=latency,
                    error_kind=str(failure_kind(error)),
                    error=(str(error) if billed is None else f"{error} (may have been billed: booked at its worst case)")[:2000],
                    ts=time.time(),
                    reserved_usd=worst,
                    cost_usd=billed,
                ),
            )
            if error is not exc:
                raise error from exc
            raise
        except BaseException:
            # Cancelled (or interrupted). Once sent, the provider may have billed the call: its row
            # stays ``started`` and the budget keeps its worst case as spent. Before, nothing was spent.
            if reservation is not None and self._budget is not None:
                self._budget.settle(reservation, worst if sent else None)
            if not sent:
                self._ledger.finish_call(
                    call_id,
                    CallRecord(
                        stage=tag.stage, instance_id=tag.instance_id, trajectory=tag.trajectory, request_hash=key,
                        model=name, error_kind="cancelled", error="cancelled before it was sent", ts=time.time(),
                    ),
                )
            raise
        latency = self._clock() - start
        cost = self._prices.cost(name, response.usage)
        if reservation is not None and self._budget is not None:
            self._budget.settle(reservation, cost)
        self._ledger.finish_call(
            call_id,
            replace(_record(tag, key, name, response, cost=cost, latency=latency, cached=False), reserved_usd=worst),
            cache_response=response.to_json() if self._use_cache else None,
        )
        return response


def _record(
    tag: CallTag, key: str, model: str, response: ChatResponse, *, cost: float | None, latency: float, cached: bool
) -> CallRecord:
    usage = response.usage
    return CallRecord(
        stage=tag.stage,
        instance_id=tag.instance_id,
        trajectory=tag.trajectory,
        request_hash=key,
        model=model,
        input_tokens=0 if cached else usage.input_tokens,
        output_tokens=0 if cached else usage.output_tokens,
        cache_read_tokens=0 if cached else usage.cache_read_tokens,
        cache_write_tokens=0 if cached else usage.cache_write_tokens,
        cost_usd=cost,
        latency_s=latency,
        cached=cached,
        ts=time.time(),
        usage_estimated=usage.estimated and not cached,
    )
