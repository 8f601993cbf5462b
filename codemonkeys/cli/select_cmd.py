"""``codemonkeys select RUN_DIR``: vote and select among each instance's candidates; ``--report`` shows the result.

A thin wrapper: the work is :func:`codemonkeys.pipeline.selecting.select_instances`
on the services ``run`` uses (:func:`codemonkeys.pipeline.build.open_services`),
so environments follow the sandbox backend (bubblewrap works) and the budget,
ledger and models are the run's.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from ..ensemble.load import Labels, LabelStatus, load_labels
from ..errors import UserError
from ..selection import group_candidates, stored_candidates, usable_candidates
from ..store import RunStore
from .common import load_cli_config
from ..tables import fitted_table
from .selecting import DATASET_HELP, command_instances, finish, progress_line, short_candidate

DATASET_HELP = "SWE-bench JSONL/JSON/parquet file or hub name (default: the instances the run registered)."

# --- report -----------------------------------------------------------------------------------


def selection_rows(store: RunStore, labels: Labels | None) -> list[dict[str, Any]]:
    """Per instance with candidates or a selection: counts, the selection, its status."""
    ids = sorted({row["instance_id"] for row in store.instance_states()} | {s["instance_id"] for s in store.selections()})
    rows = []
    for iid in ids:
        candidates = stored_candidates(store, iid)
        selection = store.selection(iid)
        if not candidates and selection is None:
            continue
        data = selection["data"] if selection else {}
        ranking = data.get("ranking", [])
        rows.append({
            "instance_id": iid,
            "candidates": len(candidates),
            "distinct": len(group_candidates(usable_candidates(candidates)[0])),
            "tests": data.get("tests", 0),
            "counted_tests": len(data.get("counted_tests", [])),
            "top_votes": ranking[0]["votes"] if ranking else None,
            "method": selection["method"] if selection else None,
            "selected": selection["candidate_id"] if selection else None,
            "status": None if labels is None or not selection or selection["candidate_id"] is None
            else str(labels.status(iid)),
        })
    return rows


def report_selection(store: RunStore, labels: Labels | None, as_json: bool) -> None:
    rows = selection_rows(store, labels)
    totals = {
        "instances": len(rows),
        "candidates": sum(r["candidates"] for r in rows),
        "distinct": sum(r["distinct"] for r in rows),
        "selected": sum(1 for r in rows if r["selected"]),
        "methods": dict(Counter(r["method"] for r in rows if r["method"])),
    }
    if labels is not None:
        totals["resolved"] = sum(1 for r in rows if r["status"] == LabelStatus.RESOLVED)
    if as_json:
        typer.echo(json.dumps({"instances": rows, "total": totals}, indent=2))
        return
    headers = ("instance", "cands", "dist", "tests", "counted", "votes", "method", "selected", *(("status",) if labels else ()))
    cells = [
        [
            r["instance_id"], str(r["candidates"]), str(r["distinct"]), str(r["tests"]), str(r["counted_tests"]),
            "-" if r["top_votes"] is None else str(r["top_votes"]), (r["method"] or "-").replace("_", " "),
            short_candidate(r["selected"], r["instance_id"]), *([str(r["status"] or "-")] if labels else []),
        ]
        for r in rows
    ]
    console = Console()
    table = fitted_table(
        "Selections", headers, cells, width=console.width, numeric=frozenset(headers[1:6]),
        caption="counted: tests that voted; votes: the top candidate's",
    )
    console.print(table)
    line = (
        f"{totals['instances']} instances, {totals['candidates']} candidates ({totals['distinct']} distinct), "
        f"{totals['selected']} selected; methods: {totals['methods']}"
    )
    if labels is not None:
        n = totals["instances"] or 1
        line += f"; selected resolved: {totals['resolved']} ({100 * totals['resolved'] / n:.1f}%)"
    console.print(line)


def register(app: typer.Typer) -> None:
    @app.command("select")
    def select(
        run_dir: Path = typer.Argument(..., help="The run directory holding the candidates."),
        dataset: str = typer.Option(None, "--dataset", help=DATASET_HELP),
        instance_ids: str = typer.Option(None, "--instance-ids", help="Comma-separated ids (default: all)."),
        split: str = typer.Option("test", help="Dataset split (hub datasets)."),
        mirror_dir: Path = typer.Option(None, "--mirror-dir", help="DIR/<owner>__<repo> git mirrors instead of GitHub."),
        report: bool = typer.Option(False, "--report", help="Show the recorded selections; run nothing."),
        labels: Path = typer.Option(None, "--labels", help="With --report: grades of the exported selections "
                                    "(SWE-bench results.json or this project's evaluation report)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
        config: str = typer.Option(None, "--config", help="Config file or shipped config name."),
        overrides: list[str] = typer.Option(None, "--set", help="key.path=value config override."),
    ) -> None:
        """Vote with the generated tests and let the selection model choose, per instance."""
        from ..swebench.instances import split_ids

        if report:
            with RunStore.open_read_only(run_dir) as store:
                report_selection(store, load_labels(labels) if labels else None, as_json)
            return
        if labels is not None:
            raise UserError("--labels goes with --report")
        from ..llm.preflight import preflight
        from ..pipeline.build import open_services
        from ..pipeline.selecting import select_instances

        cfg = load_cli_config(config, overrides, mirror_dir)
        instances = command_instances(run_dir, dataset, split_ids(instance_ids), split)
        console = Console(stderr=True)
        preflight(cfg, os.environ, stages=("selection",))  # before any image or paid call
        with open_services(cfg, run_dir, instances, os.environ, stages=("selection",)) as services:
            results = asyncio.run(select_instances(services, instances, on_done=progress_line(console)))
        finish(results, as_json)
