"""The live view of a run: instances per stage, trajectories running, spend against the budget, failures by kind.

On a terminal it is a rich panel refreshed from the store; otherwise every
pipeline event is one plain log line, so batch logs stay readable.

The panel never grows taller than the terminal (a taller one scrolls away
and leaves torn copies behind on every refresh): :func:`render` lays out a
:class:`Snapshot` for the window's size, the essentials first (spend,
instances, trajectories, failures), then spend by stage and the instances in
flight as far as the height allows, and says what it left out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from ..config import Config
from ..pipeline.instance import PipelineEvent
from ..store import RunStore

STAGES = ("pending", "context", "environment", "generation", "selection", "done")
LEDGER_STAGES = ("relevance", "ranking", "testing", "editing", "selection")
KINDS = ("testing", "editing", "selection")


@dataclass
class StageSpend:
    stage: str
    calls: int
    failed: int
    prompt_tokens: int
    output_tokens: int
    cost_usd: float
    unpriced: int
    limit_usd: float | None


@dataclass
class Snapshot:
    """What the panel shows, read from the store in one go (pure data: :func:`render` lays it out)."""

    elapsed_s: float
    instances: int
    by_stage: dict[str, Counter[str]]
    trajectories: dict[str, Counter[str]]
    spend: list[StageSpend]
    spent_usd: float
    unpriced: int
    budget_usd: float | None
    failures: dict[str, Counter[str]]
    in_flight: list[tuple[str, str, str]] = field(default_factory=list)  # (instance, stage, detail)
    logs: list[str] = field(default_factory=list)  # the last log records, shown under the essentials


def _rank(stage: str, order: tuple[str, ...]) -> tuple[int, str]:
    return (order.index(stage) if stage in order else len(order), stage)


def snapshot(store: RunStore, config: Config, started: float) -> Snapshot:
    """Read the panel's data from the store (thread-safe: rich refreshes from its own thread)."""
    states = store.instance_states()
    by_stage: dict[str, Counter[str]] = {}
    failures: dict[str, Counter[str]] = {}
    for row in states:
        stage = "done" if row["status"] == "done" else row["stage"]
        by_stage.setdefault(stage, Counter())[row["status"]] += 1
        if row["status"] == "failed":
            failures.setdefault("instances", Counter())[row["failure_kind"] or "unknown"] += 1
    records = store.trajectories()
    trajectories: dict[str, Counter[str]] = {}
    running: Counter[str] = Counter()
    for record in records:
        trajectories.setdefault(record.kind, Counter())[record.status] += 1
        if record.status == "failed":
            failures.setdefault("trajectories", Counter())[record.failure_kind or "unknown"] += 1
        if record.status == "running":
            running[record.instance_id] += 1
    total = config.budget.total_usd
    spend = []
    for ledger in store.ledger(group_by=("stage",)):
        stage = str(ledger.group[0])
        share = config.budget.stage_shares.get(stage)
        spend.append(StageSpend(
            stage, ledger.calls, ledger.failed_calls,
            ledger.input_tokens + ledger.cache_read_tokens + ledger.cache_write_tokens,
            ledger.output_tokens, ledger.cost_usd, ledger.unpriced_calls,
            total * share if total is not None and share is not None else None,
        ))
        if ledger.failed_calls:
            failures.setdefault("failed calls", Counter())[stage] += ledger.failed_calls
    spend.sort(key=lambda s: _rank(s.stage, LEDGER_STAGES))
    in_flight = [
        (row["instance_id"], row["stage"], f"{running[row['instance_id']]} trajectory(ies) running" if running[row["instance_id"]] else "")
        for row in states if row["status"] == "running"
    ]
    return Snapshot(
        elapsed_s=time.monotonic() - started, instances=len(states),
        by_stage=dict(sorted(by_stage.items(), key=lambda kv: _rank(kv[0], STAGES))),
        trajectories=dict(sorted(trajectories.items(), key=lambda kv: _rank(kv[0], KINDS))),
        spend=spend, spent_usd=sum(s.cost_usd for s in spend), unpriced=sum(s.unpriced for s in spend),
        budget_usd=total, failures=failures, in_flight=in_flight,
    )


def _tokens(value: int) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return str(value)


def _counts(counter: Counter[str], order: Iterable[str] = ()) -> str:
    keys = [k for k in order if counter.get(k)] + sorted(k for k in counter if k not in order)
    return ", ".join(f"{counter[k]} {k}" for k in keys)


def _budget_line(snap: Snapshot, width: int) -> Text:
    minutes, seconds = divmod(int(snap.elapsed_s), 60)
    spent = f"${snap.spent_usd:.4f}" + ("+?" if snap.unpriced else "")
    line = Text.assemble(("codemonkeys run", "bold"), f"  {minutes}:{seconds:02d}  {snap.instances} instances  spent ")
    line.append(spent, style="bold")
    if snap.budget_usd is None:
        line.append(" (no budget set)")
        return line
    share = snap.spent_usd / snap.budget_usd if snap.budget_usd else 1.0
    line.append(f" of ${snap.budget_usd:.2f} ({100 * share:.0f}%) ")
    room = max(0, width - line.cell_len - 2)
    bar = min(room, 20)
    if bar >= 5:
        filled = min(bar, round(share * bar))
        line.append("█" * filled, style="red" if share >= 0.9 else "green")
        line.append("░" * (bar - filled), style="dim")
    return line


def _stage_table(snap: Snapshot) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), show_edge=False, expand=False)
    table.add_column("instances", no_wrap=True)
    for column in ("pending", "running", "done", "failed"):
        table.add_column(column, justify="right", no_wrap=True)
    for stage, counts in snap.by_stage.items():
        failed = counts.get("failed", 0)
        table.add_row(
            stage, str(counts.get("pending", 0) or "") , str(counts.get("running", 0) or ""),
            str(counts.get("done", 0) or ""), Text(str(failed or ""), style="red" if failed else ""),
        )
    return table


def _trajectory_line(snap: Snapshot) -> Text:
    line = Text.assemble(("trajectories: ", "bold"))
    if not snap.trajectories:
        line.append("none yet", style="dim")
    parts = []
    for kind, counts in snap.trajectories.items():
        parts.append(f"{kind} {_counts(counts, ('running', 'done', 'limit', 'context_limit', 'failed'))}")
    line.append("; ".join(parts))
    return line


def _failure_line(snap: Snapshot) -> Text:
    line = Text.assemble(("failures: ", "bold"))
    if not snap.failures:
        line.append("none", style="green")
        return line
    parts = [f"{what} {_counts(kinds)}" for what, kinds in snap.failures.items()]
    line.append("; ".join(parts), style="red")
    return line


def _spend_table(snap: Snapshot, rows: int) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), show_edge=False, expand=False)
    table.add_column("spend", no_wrap=True)
    for column in ("calls", "failed", "prompt", "output", "cost $", "limit $"):
        table.add_column(column, justify="right", no_wrap=True)
    for s in snap.spend[:rows]:
        table.add_row(
            s.stage, str(s.calls), str(s.failed or ""), _tokens(s.prompt_tokens), _tokens(s.output_tokens),
            f"{s.cost_usd:.4f}" + ("+?" if s.unpriced else ""), "-" if s.limit_usd is None else f"{s.limit_usd:.2f}",
        )
    return table


def _flight_table(snap: Snapshot, rows: int) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), show_edge=False, expand=False)
    table.add_column("in flight", no_wrap=True, overflow="ellipsis", max_width=48)
    table.add_column("stage", no_wrap=True)
    table.add_column("", no_wrap=True, overflow="ellipsis")
    for iid, stage, detail in snap.in_flight[:rows]:
        table.add_row(iid, stage, detail)
    return table


def _height(console: Console, options: ConsoleOptions, part: RenderableType) -> int:
    return len(console.render_lines(part, options, pad=False))


def render(snap: Snapshot, console: Console, options: ConsoleOptions) -> list[RenderableType]:
    """The panel for this window: never taller than ``options.height`` (or the console) less one line."""
    width = options.max_width
    height = max(3, (options.height or console.size.height) - 1)
    parts: list[RenderableType] = [_budget_line(snap, width), _stage_table(snap), _trajectory_line(snap), _failure_line(snap)]
    used = sum(_height(console, options, p) for p in parts)
    if used > height:  # a tiny window: the one-line essentials only
        return [p for p in parts if not isinstance(p, Table)][: height]
    for line in snap.logs:
        if used + 1 < height:
            parts.append(Text(line, style="yellow", no_wrap=True, overflow="ellipsis"))
            used += 1
    spend_rows = len(snap.spend)
    while spend_rows > 0:  # a hidden row costs the note line that says so
        spend = _spend_table(snap, spend_rows)
        need = _height(console, options, spend) + (spend_rows < len(snap.spend))
        if used + need <= height:
            parts.append(spend)
            used += _height(console, options, spend)
            break
        spend_rows -= 1
    hidden: list[str] = []
    if spend_rows < len(snap.spend):
        hidden.append(f"{len(snap.spend) - spend_rows} spend row(s)")
    flight_rows = len(snap.in_flight)
    note = 1 if hidden else 0
    while flight_rows > 0:
        flight = _flight_table(snap, flight_rows)
        need = _height(console, options, flight) + max(note, int(flight_rows < len(snap.in_flight)))
        if used + need <= height:
            parts.append(flight)
            used += _height(console, options, flight)
            break
        flight_rows -= 1
    if flight_rows < len(snap.in_flight):
        hidden.append(f"{len(snap.in_flight) - flight_rows} in-flight instance(s)")
    if hidden and used < height:
        parts.append(Text(f"(not shown: {', '.join(hidden)}; see `codemonkeys status`)", style="dim", overflow="ellipsis", no_wrap=True))
    return parts


class _Recent(logging.Handler):
    """Keeps the log records of a live run: the panel shows the last few, all are written out after it."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []
        self._lock_records = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock_records:
            self.records.append(record)

    def lines(self, last: int = 3) -> list[str]:
        with self._lock_records:
            tail = self.records[-last:]
        return [f"{r.levelname.lower()}: {r.getMessage()}" for r in tail]


class _Panel:
    """A renderable that asks for a fresh snapshot whenever rich draws it."""

    def __init__(self, view: LiveView) -> None:
        self._view = view

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        snap = snapshot(self._view.store, self._view.config, self._view.started)
        snap.logs = self._view.recent_logs()
        lines = console.render_lines(Group(*render(snap, console, options)), options, pad=False)
        height = max(1, (options.height or console.size.height) - 1)
        for line in lines[:height]:
            yield from line
            yield Segment.line()


class LiveView:
    """Context manager that shows the run while it goes."""

    def __init__(self, store: RunStore, config: Config, console: Console | None = None, refresh_s: float = 1.0) -> None:
        self.store = store
        self.config = config
        self.started = time.monotonic()
        self._console = console or Console(stderr=True)
        self._refresh_s = refresh_s
        self._live: Live | None = None
        self._saved: list[logging.Handler] = []
        self._handler: _Recent | None = None

    @property
    def interactive(self) -> bool:
        return self._console.is_terminal

    def __enter__(self) -> LiveView:
        if self.interactive:
            self._live = Live(
                _Panel(self), console=self._console, refresh_per_second=1 / self._refresh_s, transient=False,
                vertical_overflow="crop",
            )
            self._live.__enter__()
            self._route_logging()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.refresh()
            self._restore_logging()
            self._live.__exit__(exc_type, exc, tb)
            self._replay_logs()

    def _route_logging(self) -> None:
        """Log records are kept for the panel while it shows, and written out after.

        Written to the terminal from the pipeline's threads while rich redraws
        the panel from its own, they leave torn copies of the panel behind.
        """
        root = logging.getLogger()
        self._saved = [h for h in root.handlers if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
        for handler in self._saved:
            root.removeHandler(handler)
        self._handler = _Recent(min((h.level for h in self._saved), default=logging.WARNING))
        root.addHandler(self._handler)

    def _restore_logging(self) -> None:
        root = logging.getLogger()
        if self._handler is not None:
            root.removeHandler(self._handler)
        for handler in self._saved:
            root.addHandler(handler)

    def recent_logs(self) -> list[str]:
        return self._handler.lines() if self._handler is not None else []

    def _replay_logs(self) -> None:
        if self._handler is None:
            return
        for record in self._handler.records:
            for handler in self._saved:
                if record.levelno >= handler.level:
                    handler.handle(record)

    def event(self, event: PipelineEvent) -> None:
        """A pipeline event: the panel refreshes itself; without a terminal, one log line."""
        if self._live is None:
            detail = f" ({event.detail})" if event.detail else ""
            self._console.print(
                f"{time.strftime('%H:%M:%S')} {event.instance_id}: {event.stage} {event.status}{detail}",
                highlight=False, soft_wrap=True,
            )
