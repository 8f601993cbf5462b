"""``codemonkeys export RUN_DIR --output all_preds.jsonl``: the run's selections as SWE-bench predictions."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from ..store import RunStore


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export(
        run_dir: Path = typer.Argument(..., help="A run directory with selections."),
        output: Path = typer.Option(..., "--output", "-o", help="Predictions file to write (JSONL)."),
        model_name: str = typer.Option("codemonkeys", "--model-name", help="The model_name_or_path of every row."),
        allow_oracle: bool = typer.Option(False, "--allow-oracle", help="Also export work of oracle models (they read the gold patch)."),
    ) -> None:
        """Write one prediction per instance with a selection (instance_id, model_name_or_path, model_patch)."""
        from ..export import export_predictions, run_taint

        with RunStore.open_read_only(run_dir) as store:
            rows = export_predictions(store, output, model_name=model_name, allow_oracle=allow_oracle)
            without = sum(1 for s in store.selections() if s["candidate_id"] is None)
            taint = run_taint(store, rows)
        note = f"; {without} instance(s) had nothing to select" if without else ""
        note += f"; ORACLE (allowed): {taint}" if taint else ""
        Console(stderr=True).print(f"wrote {len(rows)} prediction(s) to {output}{note}", highlight=False, soft_wrap=True)
