"""Persistent run state."""

from .protocols import CallLedger, ContextStore, TokenCountCache
from .records import CallRecord, ContextDecision, LedgerRow, TestExecution, TrajectoryRecord, TurnRecord
from .sqlite import DB_NAME, RunStore

__all__ = [
    "DB_NAME",
    "CallLedger",
    "CallRecord",
    "ContextDecision",
    "ContextStore",
    "LedgerRow",
    "RunStore",
    "TestExecution",
    "TokenCountCache",
    "TrajectoryRecord",
    "TurnRecord",
]
