"""``codemonkeys report RUN_DIR --output report.html``: one self-contained HTML page about a run.

Cost by stage and model, tokens and the cache-read share, failures by kind,
what the budget cut and, with grades, the score, cost per resolved instance,
coverage against the number of trajectories (pass@k and its power-law fit)
and selection against coverage.

Grades come from ``codemonkeys evaluate``. ``--labels`` grades the selected
patches (an evaluation report, SWE-bench results.json or harness report of the
exported predictions). Coverage needs every candidate graded:

    codemonkeys report RUN --export-candidates RUN/candidates
    for f in RUN/candidates/candidates-*.jsonl; do codemonkeys evaluate "$f" --dataset ...; done
    codemonkeys report RUN --candidate-labels RUN/candidates --output report.html

``--candidate-labels`` also reads a JSON object ``{candidate_id: status}``.

``--grade`` does all of that in one command: it grades the selected patches
(``--candidates``: every distinct candidate) in the run's own environments and
keeps the grades in the run store, so a rerun grades nothing twice. Reports
made later read the stored grades.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from ..errors import UserError
from ..report.grades import CandidateGrades
from ..store import RunStore


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        run_dir: Path = typer.Argument(..., help="A run directory."),
        output: Path = typer.Option(None, "--output", "-o", help="HTML file to write."),
        labels: Path = typer.Option(None, "--labels", help="Grades of the selected patches (evaluation report, "
                                    "SWE-bench results.json or harness report)."),
        candidate_labels: Path = typer.Option(None, "--candidate-labels", help="Grades of every candidate: a "
                                              "directory from --export-candidates with evaluate's reports, or "
                                              "a JSON object {candidate_id: status}."),
        export_candidates: Path = typer.Option(None, "--export-candidates", help="Write every distinct candidate "
                                               "patch as SWE-bench prediction files to grade, and stop."),
        data_json: Path = typer.Option(None, "--json", help="Also write the report's data as JSON here."),
        grade: bool = typer.Option(False, "--grade", help="Grade the selected patches in the run's environments "
                                   "first (cached in the run store: nothing is graded twice)."),
        candidates: bool = typer.Option(False, "--candidates", help="With --grade: grade every distinct candidate "
                                        "(coverage and selection accuracy need it)."),
    ) -> None:
        """Write a self-contained HTML report of a run (no network needed to open it).

        Coverage needs every candidate graded: `--export-candidates DIR` writes DIR/candidates-*.jsonl,
        `codemonkeys evaluate` grades each file (its report lands beside it), then `--candidate-labels DIR`.
        """
        from ..ensemble.load import load_labels
        from ..report.data import gather
        from ..report.grades import export_candidate_files, load_candidate_grades
        from ..report.run_grades import stored_grades

        def _stored(store: RunStore) -> CandidateGrades | None:
            found = stored_grades(store)
            return found if len(found) else None
        from ..report.html import instance_dir, write
        from ..report.instance import instance_views

        console = Console(stderr=True)
        if candidates and not grade:
            raise UserError("--candidates goes with --grade")
        if grade:
            if export_candidates is not None:
                raise UserError("--grade and --export-candidates are two routes to the same grades: pick one")
            from .grade_run import grade_stored_run

            tally = grade_stored_run(run_dir, candidates=candidates, console=console)
            console.print(f"graded {tally.graded} patch(es), {tally.cached} already graded"
                          + (f", {tally.errors} error(s)" if tally.errors else ""), highlight=False)
        with RunStore.open_read_only(run_dir) as store:
            if export_candidates is not None:
                files = export_candidate_files(store, export_candidates)
                rows = sum(len(path.read_text(encoding="utf-8").splitlines()) for path in files)
                console.print(f"wrote {rows} distinct patch(es) in {len(files)} file(s) to {export_candidates}", highlight=False)
                for path in files:
                    console.print(f"  codemonkeys evaluate {path} --dataset DATASET", highlight=False, soft_wrap=True)
                return
            if output is None and data_json is None:
                raise UserError("--output (HTML) or --json is required, or --export-candidates DIR")
            data = gather(
                store, str(run_dir),
                labels=load_labels(labels) if labels else None,
                grades=load_candidate_grades(candidate_labels) if candidate_labels else _stored(store),
            )
            if data_json is not None:
                data_json.write_text(json.dumps(data.as_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
            if output is not None:
                write(data, output, instance_views(store, [o.instance_id for o in data.outcomes]))
                console.print(f"wrote {output} and {len(data.outcomes)} instance page(s) in {instance_dir(output)}",
                              highlight=False, soft_wrap=True)
        if data.oracle_models:
            console.print(
                f"[bold red]ORACLE:[/] {', '.join(data.oracle_models)} read the gold patch; this run is a dry run, not a result",
                highlight=False, soft_wrap=True,
            )
        for note in data.notes:
            console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
