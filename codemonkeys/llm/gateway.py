"""The gateway every stage calls: one model behind the response cache, limits, budget and ledger.

Order of a call: response cache (a hit is free and recorded as cached), budget
reservation at worst-case cost, provider limiter slot, the provider call, then
one store transaction that writes the ledger row and the cache entry. Failed
calls are recorded too (with their error), so the ledger tells infrastructure
trouble apart from spending.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Protocol

from ..errors import CodeMonkeysError, ProviderError, failure_kind
from ..store.protocols import CallLedger
from ..store.records import CallRecord
from .pricing import PriceTable
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
    """A cheap upper-ish estimate (4 characters per token) for limits and budgets."""
    return len(text) // 4 + 1


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
        count_tokens: Callable[[str], int] = approx_tokens,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.model = model
        self._ledger = ledger
        self._prices = prices
        self._limiter = limiter
        self._budget = budget
        self._use_cache = use_cache
        self._count_tokens = count_tokens
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

        prompt_tokens = self._count_tokens(request.prompt_text())
        reservation = None
        if self._budget is not None:
            worst = self._prices.worst_case(name, prompt_tokens, request.max_tokens)
            reservation = self._budget.reserve(tag, worst)
        slot = self._limiter.slot(prompt_tokens + request.max_tokens) if self._limiter else nullcontext()
        start = self._clock()
        try:
            async with slot as permit:
                response = await self.model.complete(request)
                settle = getattr(permit, "settle", None)
                if settle is not None:
                    usage = response.usage
                    settle(usage.prompt_tokens + usage.output_tokens)
        except BaseException as exc:
            latency = self._clock() - start
            if reservation is not None and self._budget is not None:
                self._budget.settle(reservation, None)
            if isinstance(exc, Exception):
                error = exc if isinstance(exc, CodeMonkeysError) else ProviderError(f"{type(exc).__name__}: {exc}")
                self._ledger.record_call(
                    CallRecord(
                        stage=tag.stage,
                        instance_id=tag.instance_id,
                        trajectory=tag.trajectory,
                        request_hash=key,
                        model=name,
                        latency_s=latency,
                        error_kind=str(failure_kind(error)),
                        error=str(error)[:2000],
                        ts=time.time(),
                    )
                )
                if error is not exc:
                    raise error from exc
            raise
        latency = self._clock() - start
        cost = self._prices.cost(name, response.usage)
        if reservation is not None and self._budget is not None:
            self._budget.settle(reservation, cost)
        self._ledger.record_call(
            _record(tag, key, name, response, cost=cost, latency=latency, cached=False),
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
    )
