"""How printed tables look: compact enough for an 80-column terminal, numbers never wrapped.

Long text (ids, model names, failures) folds inside its own column; counts and
money get ``no_wrap`` columns and short forms (``41.3k``), so a narrow terminal
shrinks the text columns, never splits a number.
"""

from __future__ import annotations

from rich import box
from rich.table import Table


def compact_table(title: str | None = None, *, caption: str | None = None) -> Table:
    """A table with one space between columns and a rule under the header only."""
    return Table(
        title=title, caption=caption, box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0),
        pad_edge=False, collapse_padding=True, title_justify="left", caption_justify="left",
    )


def add_text_column(table: Table, header: str, *, min_width: int | None = None) -> None:
    table.add_column(header, overflow="fold", min_width=min_width)


def add_number_column(table: Table, header: str) -> None:
    table.add_column(header, justify="right", no_wrap=True)


def tokens(count: int) -> str:
    """``999``, ``9,999``, ``41.3k``, ``1.25M``: at most six characters."""
    if count < 10_000:
        return f"{count:,}"
    if count < 1_000_000:
        return f"{count / 1000:.1f}k"
    return f"{count / 1_000_000:.2f}M"


def usd(amount: float) -> str:
    """Dollars with the precision that matters at that size."""
    if amount == 0:
        return "0"
    if amount < 1:
        return f"{amount:.4f}"
    if amount < 1000:
        return f"{amount:.2f}"
    return f"{amount:,.0f}"
