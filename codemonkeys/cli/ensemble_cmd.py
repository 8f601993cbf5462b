"""``codemonkeys ensemble``: select among the patches of several SWE-bench submissions.

Submissions' patches (and, with ``--include-run``, another run's candidates)
become candidates in ``--run-dir``; instances without tests get them from the
testing phase; then voting and selection run exactly as in ``select``, through
the same pipeline entry point (:func:`codemonkeys.pipeline.selecting.select_instances`).
``--report`` reads the files (and the run's selections, if any) and prints
candidates, distinct candidates and, with ``--labels``, each member's resolved
rate, the oracle coverage, the random-choice expectation and the selection's.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ..ensemble import (
    EnsembleMember,
    EnsembleReport,
    Labels,
    PredictionSet,
    ensemble_report,
    instance_table,
    instance_universe,
    load_labels,
    load_predictions,
    report_table,
)
from ..errors import UserError
from ..store import RunStore
from ..tables import add_number_column, add_text_column, compact_table
from .common import load_cli_config
from .selecting import DATASET_HELP, command_instances, finish, progress_line


def member_name(path: Path) -> str:
    """A submission's name: its folder for ``<folder>/all_preds.jsonl`` (or a folder), else the file stem."""
    if path.is_dir() or path.name in ("all_preds.jsonl", "all_preds.json", "preds.json"):
        return (path if path.is_dir() else path.parent).name
    return path.stem


def load_members(submissions: Sequence[Path], labels: Sequence[Path]) -> list[tuple[str, PredictionSet, Labels | None]]:
    """Each submission with its labels (``--labels`` pair with ``--submission`` in order)."""
    if labels and len(labels) != len(submissions):
        raise UserError(f"give one --labels per --submission, in the same order ({len(submissions)} submissions, {len(labels)} labels)")
    members = []
    for index, path in enumerate(submissions):
        file = path / "all_preds.jsonl" if path.is_dir() else path
        members.append((member_name(path), load_predictions(file), load_labels(labels[index]) if labels else None))
    names = [name for name, _, _ in members]
    if len(set(names)) != len(names):
        raise UserError(f"submission names must differ, got {names}; rename a file or folder")
    return members


def selected_members(store: RunStore, names: set[str]) -> tuple[dict[str, str], int]:
    """Instance -> the member whose patch was selected; and how many selections no member made
    (a candidate of an included run with a patch no submission has)."""
    chosen: dict[str, str] = {}
    outside = 0
    for selection in store.selections():
        if selection["candidate_id"] is None:
            continue
        members = set(selection["data"].get("members") or [selection["candidate_id"]])
        sources = sorted(
            row["source"] for row in store.candidates(selection["instance_id"])
            if row["candidate_id"] in members and row["source"] in names
        )
        if sources:
            chosen[selection["instance_id"]] = sources[0]
        else:
            outside += 1
    return chosen, outside


def ensemble_members(members: Sequence[tuple[str, PredictionSet, Labels | None]]) -> list[EnsembleMember]:
    """Members for the pure report; a member without labels has no resolved instance."""
    empty = Labels(source="(no labels)", statuses={}, mentioned=frozenset())
    return [EnsembleMember(name=n, predictions=p, labels=l or empty) for n, p, l in members]


def build_report(
    members: Sequence[tuple[str, PredictionSet, Labels | None]],
    universe: Sequence[str],
    selection: Mapping[str, str] | None,
) -> EnsembleReport:
    return ensemble_report(ensemble_members(members), universe, selection)


def _counts_table(report: EnsembleReport, members: Sequence[tuple[str, PredictionSet, Labels | None]]) -> Table:
    table = compact_table(f"Ensemble over {report.n_instances} instances (no labels)")
    add_text_column(table, "member")
    add_number_column(table, "patches")
    add_number_column(table, "missing or empty rows")
    for summary, (_, predictions, _) in zip(report.members, members, strict=True):
        table.add_row(summary.name, str(summary.patches), str(predictions.skipped_missing + predictions.skipped_empty))
    table.caption = f"{report.candidates} candidate patches, {report.distinct} distinct after normalization"
    return table


def print_report(
    members: Sequence[tuple[str, PredictionSet, Labels | None]],
    universe: Sequence[str],
    store: RunStore | None,
    as_json: bool,
) -> EnsembleReport:
    names = {name for name, _, _ in members}
    selection: dict[str, str] | None = None
    outside = 0
    if store is not None and store.selections():
        selection, outside = selected_members(store, names)
    report = build_report(members, universe, selection)
    labelled = all(l is not None for _, _, l in members)
    if as_json:
        payload: dict[str, Any] = report.model_dump(mode="json")
        for row, data in zip(report.instances, payload["instances"], strict=True):
            data.update(candidates=row.candidates, oracle=row.oracle)
        payload["labelled"] = labelled
        payload["selections_outside_members"] = outside
        payload["totals"] = {"oracle_rate": report.oracle_rate, "random_rate": report.random_rate, "selected_rate": report.selected_rate}
        typer.echo(json.dumps(payload, indent=2))
        return report
    console = Console()
    console.print(instance_table(report))
    console.print(report_table(report) if labelled else _counts_table(report, members))
    if outside:
        console.print(f"{outside} selection(s) chose a candidate no submission has (not graded here)")
    return report


def register(app: typer.Typer) -> None:
    @app.command("ensemble")
    def ensemble(
        submissions: list[Path] = typer.Option(..., "--submission", help="A predictions file (all_preds.jsonl) or its folder; repeat."),
        labels: list[Path] = typer.Option(None, "--labels", help="Grades of each submission, in --submission order: "
                                          "SWE-bench results.json or this project's evaluation report."),
        dataset: str = typer.Option(None, "--dataset", help=DATASET_HELP),
        run_dir: Path = typer.Option(None, "--run-dir", help="Where the ensemble's candidates, tests and selections live."),
        include_run: list[Path] = typer.Option(None, "--include-run", help="Another run directory whose candidates join the pool."),
        instance_ids: str = typer.Option(None, "--instance-ids", help="Comma-separated ids (default: the whole dataset)."),
        split: str = typer.Option("test", help="Dataset split (hub datasets)."),
        mirror_dir: Path = typer.Option(None, "--mirror-dir", help="DIR/<owner>__<repo> git mirrors instead of GitHub."),
        report: bool = typer.Option(False, "--report", help="Only report what the submissions (and the run's selections) score."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
        config: str = typer.Option(None, "--config", help="Config file or shipped config name."),
        overrides: list[str] = typer.Option(None, "--set", help="key.path=value config override."),
    ) -> None:
        """Pool submissions' patches, generate tests where none exist, vote and select."""
        from ..swebench.instances import load_instances, split_ids

        members = load_members(submissions, labels or [])
        ids = split_ids(instance_ids)
        if report:
            if dataset is not None:
                universe = [i.instance_id for i in load_instances(dataset, split=split, instance_ids=ids or None)]
            else:
                universe = ids or list(instance_universe(ensemble_members(members)))
            if run_dir is not None:
                with RunStore.open_read_only(run_dir) as store:
                    print_report(members, universe, store, as_json)
            else:
                print_report(members, universe, None, as_json)
            return
        if run_dir is None:
            raise UserError("--run-dir is required (except with --report)")
        from ..llm.preflight import preflight
        from ..pipeline.build import open_services
        from ..pipeline.selecting import select_instances, stored_instances, test_writer

        cfg = load_cli_config(config, overrides, mirror_dir)
        console = Console(stderr=True)
        if dataset is not None:
            instances = command_instances(run_dir, dataset, ids, split)
        else:
            if not (run_dir / "run.sqlite").is_file():
                raise UserError(f"{run_dir} has no instances yet: pass --dataset")
            with RunStore.open_existing(run_dir) as existing:
                instances = stored_instances(existing, ids)
        if not instances:
            raise UserError(f"{run_dir} has no instances yet: pass --dataset")
        preflight(cfg, os.environ, stages=("selection", "testing"))  # before any image or paid call
        with open_services(cfg, run_dir, instances, os.environ, stages=("selection", "testing")) as services:
            universe = [i.instance_id for i in instances]
            pooled = _pool(services.store, members, include_run or [], universe, console)
            results = asyncio.run(
                select_instances(
                    services, instances, prepare=test_writer(services), on_done=progress_line(console), ensemble=True
                )
            )
            _finish_with_report(results, members, universe, services.store, as_json, pooled)


def _pool(store: RunStore, members: Sequence[tuple[str, PredictionSet, Labels | None]], runs: Sequence[Path], ids: list[str], console: Console) -> dict[str, Any]:
    from ..ensemble.pool import include_run, pool_submissions

    summary = pool_submissions(store, [(n, p) for n, p, _ in members], ids)
    for name, _, _ in members:
        console.print(
            f"{name}: {summary.added[name]} candidates; skipped {summary.no_patch[name]} missing or empty patch(es), "
            f"{summary.unparsable[name]} unreadable, {summary.no_prediction[name]} instance(s) without a row",
            highlight=False, soft_wrap=True,
        )
    imported = {}
    for path in runs:
        with RunStore.open_read_only(path) as other:
            imported[str(path)] = include_run(store, other, Path(path).name, ids)
        console.print(f"{path}: {imported[str(path)]} candidates included", highlight=False, soft_wrap=True)
    return {"added": dict(summary.added), "no_patch": dict(summary.no_patch), "unparsable": dict(summary.unparsable),
            "no_prediction": dict(summary.no_prediction), "included": imported}


def _finish_with_report(results: Any, members: Any, universe: list[str], store: RunStore, as_json: bool, pooled: dict[str, Any]) -> None:
    if as_json:
        typer.echo(json.dumps({"pooled": pooled}, indent=2))
    elif all(l is not None for _, _, l in members):
        print_report(members, universe, store, as_json=False)
    finish(results, as_json)
