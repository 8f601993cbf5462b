"""Persistent run state."""

from .protocols import CallLedger
from .records import CallRecord, LedgerRow, TestExecution, TrajectoryRecord, TurnRecord
from .sqlite import DB_NAME, RunStore

__all__ = [
    "DB_NAME",
    "CallLedger",
    "CallRecord",
    "LedgerRow",
    "RunStore",
    "TestExecution",
    "TrajectoryRecord",
    "TurnRecord",
]
