"""Narrow views of the store, one per consumer, so stages depend on what they use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .records import CallRecord, ContextDecision


class CallLedger(Protocol):
    """What the model gateway needs: the ledger and the response cache."""

    def record_call(self, record: CallRecord, cache_response: str | None = None) -> None: ...

    def start_call(self, record: CallRecord) -> int: ...

    def finish_call(self, call_id: int, record: CallRecord, cache_response: str | None = None) -> None: ...

    def cached_response(self, request_hash: str) -> str | None: ...

    def total_cost(self, **where: str | None) -> float: ...


class TokenCountCache(Protocol):
    """Token counts of git blobs by sha, so a file unchanged across instances is tokenized once."""

    def token_counts(self, tokenizer: str, blobs: Sequence[str]) -> dict[str, int]: ...

    def put_token_counts(self, tokenizer: str, counts: Mapping[str, int]) -> None: ...


class ContextStore(TokenCountCache, Protocol):
    """What the context stage reads and writes: decisions per file, results per instance."""

    def context_decisions(
        self, instance_id: str, model: str | None = None, prompt_version: str | None = None
    ) -> list[ContextDecision]: ...

    def put_context_decision(self, decision: ContextDecision) -> None: ...

    def put_result(self, instance_id: str, stage: str, key: str, data: Any) -> None: ...

    def get_result(self, instance_id: str, stage: str, key: str) -> Any | None: ...

    def set_instance_state(
        self,
        instance_id: str,
        stage: str,
        status: str,
        failure_kind: str | None = None,
        failure: str | None = None,
    ) -> None: ...
