"""Narrow views of the store, one per consumer, so stages depend on what they use."""

from __future__ import annotations

from typing import Protocol

from .records import CallRecord


class CallLedger(Protocol):
    """What the model gateway needs: the ledger and the response cache."""

    def record_call(self, record: CallRecord, cache_response: str | None = None) -> None: ...

    def cached_response(self, request_hash: str) -> str | None: ...

    def total_cost(self, **where: str | None) -> float: ...
