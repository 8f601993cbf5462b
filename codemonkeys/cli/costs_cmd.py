"""``codemonkeys costs RUN_DIR``: the cost ledger by stage and model."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..store import LedgerRow, RunStore

_GROUPS = {"stage": ("stage",), "model": ("model",), "stage-model": ("stage", "model"), "instance": ("instance_id",)}


def ledger_table(rows: list[LedgerRow], names: tuple[str, ...], title: str) -> Table:
    """A rich table of ledger rows with a total line."""
    table = Table(title=title)
    for name in names:
        table.add_column(name)
    for column in ("calls", "cached", "failed", "input", "output", "cache read", "cache write", "cost $"):
        table.add_column(column, justify="right")
    for row in rows:
        cost = f"{row.cost_usd:.4f}" + (f" (+{row.unpriced_calls} unpriced)" if row.unpriced_calls else "")
        table.add_row(
            *(str(value) if value is not None else "-" for value in row.group),
            str(row.calls),
            str(row.cached_calls),
            str(row.failed_calls),
            f"{row.input_tokens:,}",
            f"{row.output_tokens:,}",
            f"{row.cache_read_tokens:,}",
            f"{row.cache_write_tokens:,}",
            cost,
        )
    return table


def register(app: typer.Typer) -> None:
    @app.command("costs")
    def costs(
        run_dir: Path = typer.Argument(..., help="A run directory."),
        by: str = typer.Option("stage-model", help=f"Grouping: {', '.join(_GROUPS)}."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        """Show what a run has spent, from its ledger."""
        from ..errors import UserError

        if by not in _GROUPS:
            raise UserError(f"--by must be one of {', '.join(_GROUPS)}, got {by!r}")
        names = _GROUPS[by]
        with RunStore.open_read_only(run_dir) as store:
            rows = store.ledger(group_by=names)
            total = store.ledger(group_by=())
        if as_json:
            payload = {
                "rows": [row.as_dict(names) for row in rows],
                "total": total[0].as_dict(("all",)) if total else None,
            }
            typer.echo(json.dumps(payload, indent=2))
            return
        console = Console()
        console.print(ledger_table(rows + total, names, f"Costs of {run_dir}"))
