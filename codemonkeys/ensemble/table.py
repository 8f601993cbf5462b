"""Rich tables for an :class:`EnsembleReport`; the CLI decides where to print them."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from ..tables import add_number_column, add_text_column, compact_table
from .report import EnsembleReport


def _percent(count: float, total: int) -> str:
    return f"{100 * count / total:.1f}%"


def report_table(report: EnsembleReport) -> Table:
    """One row per member, then the oracle, random-choice and selection rows."""
    n = report.n_instances
    table = compact_table(
        f"Ensemble over {n} instances",
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
    add_number_column(table, "#")
    add_text_column(table, "member")
    add_number_column(table, "patches")
    add_number_column(table, "resolved")
    add_number_column(table, f"% of {n}")
    for number, member in enumerate(report.members, 1):
        table.add_row(
            str(number), member.name, str(member.patches), str(member.resolved), _percent(member.resolved, n)
        )
    table.add_section()
    if (best := report.best_member) is not None:
        table.add_row(
            "", f"best member (#{report.members.index(best) + 1})", "", str(best.resolved), _percent(best.resolved, n)
        )
    table.add_row(
        "",
        "oracle (any member resolved)",
        "",
        str(report.oracle_resolved),
        _percent(report.oracle_resolved, n),
    )
    table.add_row(
        "",
        "random choice (expected)",
        "",
        f"{report.random_expected_resolved:.1f}",
        _percent(report.random_expected_resolved, n),
    )
    if report.selected_resolved is not None:
        table.add_row(
            "", "selection", "", str(report.selected_resolved), _percent(report.selected_resolved, n)
        )
    return table


def instance_table(report: EnsembleReport, limit: int | None = None) -> Table:
    """Per-instance detail: candidates, distinct patches, who resolved it, the pick."""
    table = compact_table(
        "Per instance",
        caption="cands: candidates, dist: distinct patches, resolved by: members' # in the Ensemble table, "
        "p(rand): chance a random pick resolves",
    )
    numbers = {member.name: str(number) for number, member in enumerate(report.members, 1)}
    add_text_column(table, "instance", min_width=12)
    add_number_column(table, "cands")
    add_number_column(table, "dist")
    add_text_column(table, "resolved by")
    add_number_column(table, "p(rand)")
    add_text_column(table, "selected")
    for row in report.instances[:limit]:
        selected = "" if row.selected is None else f"{row.selected} ({row.selected_status})"
        table.add_row(
            row.instance_id,
            str(row.candidates),
            str(row.distinct),
            " ".join(numbers.get(name, name) for name in row.resolved) or "-",
            f"{row.random_expectation:.2f}",
            selected,
        )
    return table


def table_text(table: Table, width: int = 120) -> str:
    """A table as plain text (no colour codes), for logs, tests and reports."""
    console = Console(file=io.StringIO(), width=width, color_system=None, record=True)
    console.print(table)
    return console.export_text()
