"""``codemonkeys costs RUN_DIR``: the cost ledger by stage and model."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..llm.registry import SDK_PROVIDERS
from ..store import LedgerRow, RunStore
from ..tables import add_number_column, add_text_column, compact_table, tokens, usd

_GROUPS = {"stage": ("stage",), "model": ("model",), "stage-model": ("stage", "model"), "instance": ("instance_id",)}


def ledger_table(rows: list[LedgerRow], names: tuple[str, ...], title: str, total: LedgerRow | None = None) -> Table:
    """The ledger rows, then the total in the same columns; readable at 80 columns."""
    table = compact_table(title)
    for name in names:
        add_text_column(table, name.replace("_", " "))
    for column in ("calls", "hit", "err", "input", "output", "c.read", "c.write", "$"):
        add_number_column(table, column)
    unpriced = started = 0

    def cells(row: LedgerRow) -> list[str]:
        return [
            str(row.calls), str(row.cached_calls), str(row.failed_calls),
            tokens(row.input_tokens), tokens(row.output_tokens),
            tokens(row.cache_read_tokens), tokens(row.cache_write_tokens),
            usd(row.cost_usd) + ("*" if row.unpriced_calls else ""),
        ]

    for row in rows:
        unpriced += row.unpriced_calls
        started += row.started_calls
        table.add_row(*(_label(value) for value in row.group), *cells(row))
    if total is not None:
        table.add_section()
        table.add_row("total", *([""] * (len(names) - 1)), *cells(total), style="bold")
    notes = ["hit: from the response cache, err: failed; tokens in, out, cache read, cache write"]
    if unpriced:
        notes.append(f"* {unpriced} unpriced call(s) not in the dollars (set pricing.<model> in the config)")
    if started:
        notes.append(
            f"{started} call(s) in flight when their process died, counted at their worst case until a rerun "
            "gets the same request answered"
        )
    table.caption = "\n".join(notes)
    return table


def _label(value: object) -> str:
    """A group value as shown: ``claude-sonnet-4-5 (anthropic)`` wraps at the space; the server URL is left to --json."""
    if value is None:
        return "-"
    text = str(value).split("@", 1)[0]
    provider, sep, name = text.partition(":")
    return f"{name} ({provider})" if sep and name and provider in SDK_PROVIDERS else text


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
        console.print(ledger_table(rows, names, f"Costs of {run_dir}", total[0] if total else None))
