"""The trajectory boundary: where failures are caught, recorded by kind, and reopened on reruns.

Generation and selection trajectories share these rules: any exception ends
the trajectory as ``failed`` with its :class:`~codemonkeys.errors.FailureKind`
(never propagates to the other trajectories), and a rerun reopens the ones
that failed for infrastructure or budget reasons while model failures stand.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from .errors import FailureKind, failure_kind

log = logging.getLogger(__name__)

RETRIED_KINDS = frozenset({str(FailureKind.INFRA), str(FailureKind.BUDGET)})


class Outcome(Protocol):
    """What a trajectory state must have for the boundary (both pydantic states do)."""

    status: Any
    failure_kind: str | None
    failure: str | None

    @property
    def trajectory_id(self) -> str: ...

    @property
    def finished(self) -> bool: ...

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Any: ...


S = TypeVar("S", bound=Outcome)


def reopened(saved: S) -> S:
    """``saved``, reopened when it failed for a reason a rerun retries."""
    if saved.status == "failed" and saved.failure_kind in RETRIED_KINDS:
        return saved.model_copy(update={"status": "running", "failure_kind": None, "failure": None})
    return saved


async def guarded(run: Callable[[S], Awaitable[S]], state: S, save: Callable[[S, dict[str, object]], None]) -> S:
    """Run a trajectory; any failure is recorded on it (and saved), never raised."""
    if state.finished:
        return state
    try:
        return await run(state)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the trajectory boundary
        kind = failure_kind(exc)
        log.warning("%s failed (%s): %s", state.trajectory_id, kind, exc)
        state.status = "failed"
        state.failure_kind = str(kind)
        state.failure = f"{type(exc).__name__}: {exc}"[:2000]
        save(state, {"action": "failed", "kind": str(kind)})
        return state
