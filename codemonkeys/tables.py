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


def fitted_table(
    title: str,
    headers: tuple[str, ...],
    rows: list[list[str]],
    *,
    width: int,
    numeric: frozenset[str] = frozenset(),
    flexible: str | None = None,
    caption: str | None = None,
) -> Table:
    """A table whose columns are sized to their longest word, ``flexible`` (default: the first) taking the rest.

    Rich shrinks every wrappable column alike, which folds ids mid-word; sizing
    here wraps text between words and folds only the flexible column, if anything.
    """
    flexible = flexible or headers[0]

    def longest(i: int) -> int:
        texts = [headers[i], *(row[i] for row in rows)]
        return max((len(word) for text in texts for line in text.splitlines() for word in line.split()), default=1)

    sizes = {header: longest(i) for i, header in enumerate(headers)}
    longest_flexible = max((len(row[headers.index(flexible)]) for row in rows), default=len(flexible))
    others = sum(size for header, size in sizes.items() if header != flexible)
    sizes[flexible] = max(sizes[flexible], min(longest_flexible, width - others - len(headers)))
    table = compact_table(title, caption=caption)
    for header in headers:
        table.add_column(
            header, width=sizes[header], justify="right" if header in numeric else "left",
            overflow="fold", no_wrap=header in numeric,
        )
    for row in rows:
        table.add_row(*row)
    return table
