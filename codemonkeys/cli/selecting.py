"""What ``select`` and ``ensemble`` share: their instances, the outcome table, the exit status.

The work itself is the pipeline's (:mod:`codemonkeys.pipeline.selecting`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..pipeline.selecting import InstanceResult, stored_instances
from ..store import RunStore
from ..swebench.instances import Instance

DATASET_HELP = "SWE-bench JSONL/JSON/parquet file or hub name (default: the instances the run registered)."


def command_instances(run_dir: Path, dataset: str | None, ids: list[str], split: str = "test") -> list[Instance]:
    """Instances from the dataset, else those the run in ``run_dir`` registered (it must exist then)."""
    from ..swebench.instances import load_instances

    if dataset is not None:
        return load_instances(dataset, split=split, instance_ids=ids or None)
    with RunStore.open_existing(run_dir) as store:
        return stored_instances(store, ids)


def outcome_table(results: Sequence[InstanceResult]) -> Table:
    table = Table(title="Selection")
    for column in ("instance", "method", "selected", "votes", "distinct", "tests", "cells run", "note"):
        table.add_column(column, justify="right" if column in ("votes", "distinct", "tests", "cells run") else "left")
    for r in results:
        o = r.outcome
        if o is None:
            table.add_row(r.instance_id, "[red]failed", "", "", "", "", "", f"{r.failure_kind}: {(r.failure or '')[:80]}")
            continue
        votes = str(o.top[0].votes) if o.top and o.matrix is not None else "-"
        tests = "-" if o.matrix is None else str(len(o.matrix.tests))
        table.add_row(
            r.instance_id, o.method, o.candidate_id or "-", votes, str(len(o.ranking)), tests, str(r.executed),
            (o.reason or "")[:80],
        )
    return table


def progress_line(console: Console) -> Callable[[InstanceResult], None]:
    """An ``on_done`` callback printing one line per finished instance."""

    def done(r: InstanceResult) -> None:
        console.print(f"{r.instance_id}: {r.outcome.method if r.outcome else f'failed ({r.failure_kind})'}", highlight=False)

    return done


def finish(results: list[InstanceResult], as_json: bool) -> None:
    """Print the outcomes; exit 1 when an instance failed."""
    if as_json:
        typer.echo(json.dumps([
            {"instance_id": r.instance_id, "failure_kind": r.failure_kind, "failure": r.failure, "executed": r.executed}
            | ({"method": r.outcome.method, "candidate_id": r.outcome.candidate_id, **r.outcome.record()} if r.outcome else {})
            for r in results
        ], indent=2))
    else:
        Console().print(outcome_table(results))
    if any(r.outcome is None for r in results):
        raise typer.Exit(1)
