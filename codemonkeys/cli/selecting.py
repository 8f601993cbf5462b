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
from ..tables import fitted_table

DATASET_HELP = "SWE-bench JSONL/JSON/parquet file or hub name (default: the instances the run registered)."


def command_instances(run_dir: Path, dataset: str | None, ids: list[str], split: str = "test") -> list[Instance]:
    """Instances from the dataset, else those the run in ``run_dir`` registered (it must exist then)."""
    from ..swebench.instances import load_instances

    if dataset is not None:
        return load_instances(dataset, split=split, instance_ids=ids or None)
    with RunStore.open_existing(run_dir) as store:
        return stored_instances(store, ids)


def outcome_table(results: Sequence[InstanceResult], width: int = 80) -> Table:
    """One row per instance; ids stay whole and the note wraps in what is left of ``width``."""
    cells = []
    for r in results:
        o = r.outcome
        if o is None:
            cells.append([r.instance_id, "failed", "-", "", "", "", "", f"{r.failure_kind}: {(r.failure or '')[:80]}"])
            continue
        votes = str(o.top[0].votes) if o.top and o.matrix is not None else "-"
        tests = "-" if o.matrix is None else str(len(o.matrix.tests))
        cells.append([
            r.instance_id, o.method.replace("_", " "), short_candidate(o.candidate_id, r.instance_id), votes,
            str(len(o.ranking)), tests, str(r.executed), (o.reason or "")[:80],
        ])
    headers = ("instance", "method", "selected", "votes", "dist", "tests", "cells", "note")
    return fitted_table(
        "Selection", headers, cells, width=width, numeric=frozenset(headers[3:7]), flexible="note",
        caption="selected: the candidate within its instance; cells: tests run now",
    )


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
        console = Console()
        console.print(outcome_table(results, console.width))
    if any(r.outcome is None for r in results):
        raise typer.Exit(1)


def short_candidate(candidate_id: str | None, instance_id: str) -> str:
    """``django__django-1/generation/3`` as ``generation/3``: the instance is in its own column."""
    if not candidate_id:
        return "-"
    return candidate_id.removeprefix(f"{instance_id}/")
