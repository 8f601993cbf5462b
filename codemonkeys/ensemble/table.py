"""Rich tables for an :class:`EnsembleReport`; the CLI decides where to print them."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from .report import EnsembleReport


def _percent(count: float, total: int) -> str:
    return f"{100 * count / total:.1f}%"


def report_table(report: EnsembleReport) -> Table:
    """One row per member, then the oracle, random-choice and selection rows."""
    n = report.n_instances
    table = Table(
        title=f"Ensemble over {n} instances",
        caption=(
            f"{report.candidates} candidate patches, {report.distinct} distinct after normalization"
            + (
                f", {report.unparsable_patches} not parsable as diffs"
                if report.unparsable_patches
                else ""
            )
            + (
                f"; {odd} resolved label(s) without a patch"
                if (odd := sum(m.resolved_without_patch for m in report.members))
                else ""
            )
        ),
    )
    table.add_column("member")
    table.add_column("patches", justify="right")
    table.add_column("resolved", justify="right")
    table.add_column(f"% of {n}", justify="right")
    for member in report.members:
        table.add_row(
            member.name, str(member.patches), str(member.resolved), _percent(member.resolved, n)
        )
    table.add_section()
    table.add_row(
        "oracle (any member resolved)",
        "",
        str(report.oracle_resolved),
        _percent(report.oracle_resolved, n),
    )
    table.add_row(
        "random choice (expected)",
        "",
        f"{report.random_expected_resolved:.1f}",
        _percent(report.random_expected_resolved, n),
    )
    if report.selected_resolved is not None:
        table.add_row(
            "selection", "", str(report.selected_resolved), _percent(report.selected_resolved, n)
        )
    return table


def instance_table(report: EnsembleReport, limit: int | None = None) -> Table:
    """Per-instance detail: candidates, distinct patches, who resolved it, the pick."""
    table = Table(title="Per instance")
    for name, justify in (
        ("instance", "left"),
        ("candidates", "right"),
        ("distinct", "right"),
        ("resolved by", "left"),
        ("random", "right"),
        ("selected", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in report.instances[:limit]:
        selected = "" if row.selected is None else f"{row.selected} ({row.selected_status})"
        table.add_row(
            row.instance_id,
            str(row.candidates),
            str(row.distinct),
            ", ".join(row.resolved) or "-",
            f"{row.random_expectation:.2f}",
            selected,
        )
    return table


def table_text(table: Table, width: int = 120) -> str:
    """A table as plain text (no colour codes), for logs, tests and reports."""
    console = Console(file=io.StringIO(), width=width, color_system=None, record=True)
    console.print(table)
    return console.export_text()
