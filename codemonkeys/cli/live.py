"""The live view of a run: instances per stage, trajectories, tokens, cost against the budget, failures.

On a terminal it is a rich panel refreshed from the store; otherwise every
pipeline event is one plain log line, so batch logs stay readable.
"""

from __future__ import annotations

import time
from collections import Counter
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from ..config import Config
from ..pipeline.instance import PipelineEvent
from ..store import RunStore


def stage_table(store: RunStore, config: Config) -> Table:
    """Spending per stage against the budget."""
    table = Table(title="cost by stage", expand=False)
    for column in ("stage", "calls", "cached", "failed", "prompt tok", "cache-read tok", "output tok", "cost $", "limit $"):
        table.add_column(column, justify="right" if column != "stage" else "left")
    total = config.budget.total_usd
    for row in store.ledger(group_by=("stage",)):
        stage = str(row.group[0])
        share = config.budget.stage_shares.get(stage)
        limit = f"{total * share:.2f}" if total is not None and share is not None else "-"
        prompt = row.input_tokens + row.cache_read_tokens + row.cache_write_tokens
        cost = f"{row.cost_usd:.4f}" + ("+?" if row.unpriced_calls else "")
        table.add_row(
            stage, str(row.calls), str(row.cached_calls), str(row.failed_calls), f"{prompt:,}",
            f"{row.cache_read_tokens:,}", f"{row.output_tokens:,}", cost, limit,
        )
    spent = store.total_cost()
    table.caption = f"total ${spent:.4f}" + (f" of ${total:.2f}" if total is not None else " (no budget set)")
    return table


def instance_table(store: RunStore) -> Table:
    """Instances per stage and status, trajectories by status, failures by kind."""
    states = store.instance_states()
    by_stage = Counter((row["stage"], row["status"]) for row in states)
    failures = Counter(row["failure_kind"] for row in states if row["status"] == "failed")
    trajectories = Counter(record.status for record in store.trajectories())
    table = Table(title="instances", expand=False)
    table.add_column("stage")
    table.add_column("status")
    table.add_column("instances", justify="right")
    for (stage, status), count in sorted(by_stage.items()):
        table.add_row(stage, status, str(count))
    table.caption = (
        "trajectories: " + (", ".join(f"{k} {v}" for k, v in sorted(trajectories.items())) or "none")
        + " | failures: " + (", ".join(f"{k} {v}" for k, v in sorted(failures.items())) or "none")
    )
    return table


class LiveView:
    """Context manager that shows the run while it goes."""

    def __init__(self, store: RunStore, config: Config, console: Console | None = None, refresh_s: float = 1.0) -> None:
        self._store = store
        self._config = config
        self._console = console or Console(stderr=True)
        self._refresh_s = refresh_s
        self._live: Live | None = None

    @property
    def interactive(self) -> bool:
        return self._console.is_terminal

    def __rich__(self) -> Group:
        """Rendered by rich's refresh thread from the store (which is thread-safe)."""
        return Group(instance_table(self._store), stage_table(self._store, self._config))

    def __enter__(self) -> LiveView:
        if self.interactive:
            self._live = Live(self, console=self._console, refresh_per_second=1 / self._refresh_s, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(exc_type, exc, tb)

    def event(self, event: PipelineEvent) -> None:
        """A pipeline event: the panel refreshes itself; without a terminal, one log line."""
        if self._live is None:
            detail = f" ({event.detail})" if event.detail else ""
            self._console.print(
                f"{time.strftime('%H:%M:%S')} {event.instance_id}: {event.stage} {event.status}{detail}",
                highlight=False, soft_wrap=True,
            )
