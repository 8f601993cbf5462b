"""The inspector in the terminal: an :class:`InstanceView` as rich renderables, readable at 80 columns.

Long texts (model answers, test output, patches) are collapsed to their first
lines with a count of what is hidden; ``full`` shows everything.
"""

from __future__ import annotations

from collections.abc import Iterator

from rich.console import Group as RichGroup
from rich.console import RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from .instance import ORIGINAL, OUTCOME_MARKS, Grid, InstanceView, Spent, TrajectoryView, Turn, column_letter

COLLAPSED_LINES = 8
STATUS_STYLE = {"done": "green", "failed": "red", "limit": "yellow", "context_limit": "yellow", "running": "cyan"}


def collapse(text: str, full: bool, lines: int = COLLAPSED_LINES) -> Text:
    """``text`` as is, or its first ``lines`` lines and how many more there are."""
    parts = text.rstrip("\n").splitlines()
    if full or len(parts) <= lines:
        return Text("\n".join(parts))
    shown = Text("\n".join(parts[:lines]))
    shown.append(f"\n… {len(parts) - lines} more line(s) (--full shows all)", style="dim italic")
    return shown


def money(spent: Spent) -> str:
    cost = f"${spent.cost_usd:.4f}" + ("+?" if spent.unpriced_calls else "")
    return (f"{spent.calls} call(s), {spent.input_tokens:,} in + {spent.cache_read_tokens:,} cache-read"
            f" / {spent.output_tokens:,} out tokens, {cost}")


def header(view: InstanceView) -> RenderableType:
    style = STATUS_STYLE.get(view.status, "white")
    text = Text.assemble((view.instance_id, "bold"), "  ", (f"{view.stage} {view.status}", style))
    if view.failure_kind:
        text.append(f"  {view.failure_kind} failure: {view.failure or ''}", style="red")
    text.append(f"\nspent: {money(view.spent)}")
    if view.plan and view.plan.get("degraded"):
        text.append(f"\nbudget cut the plan: {view.plan.get('reason', '')}", style="yellow")
    return text


def context_section(view: InstanceView, full: bool) -> Iterator[RenderableType]:
    ctx = view.context
    yield Rule("context", align="left")
    if not ctx.ran and not ctx.decisions:
        yield Text("the context stage has not run for this instance", style="dim")
        return
    yield Text(f"{ctx.files} file(s) read, {ctx.relevant} relevant, {ctx.parse_failures} unreadable answer(s)"
               + ("" if ctx.complete else "; incomplete (infra errors: a rerun retries them)"))
    table = Table("file", "decision", "tokens", "summary / why", expand=False, show_lines=False)
    shown = ctx.decisions if full else [d for d in ctx.decisions if d.relevant or d.status != "scored"]
    for d in shown:
        if d.status == "scored":
            decision = Text("relevant", style="green") if d.relevant else Text("not relevant", style="dim")
            why = d.summary or ""
        else:
            decision = Text(d.status.replace("_", " "), style="red")
            why = f"raw answer: {d.detail}" if d.status == "parse_failure" else (d.detail or "")
        table.add_row(d.path, decision, "-" if d.tokens is None else f"{d.tokens:,}", collapse(why, full, 3))
    hidden = len(ctx.decisions) - len(shown)
    if hidden:
        table.caption = f"{hidden} file(s) judged not relevant hidden (--full shows them)"
    yield table
    for i, order in enumerate(ctx.rankings):
        yield Text(f"ranking run {i}: " + (", ".join(order) or "(empty)"), overflow="fold")
    for failure in ctx.ranking_failures:
        yield Text(f"ranking failed: {failure}", style="red")
    if ctx.ranking_fallback:
        yield Text(f"ranking fallback: {ctx.ranking_fallback}", style="yellow")
    yield Text("merged order: " + (", ".join(ctx.ranked) or "(none)"), overflow="fold")
    if ctx.unranked:
        yield Text("relevant but named by no ranking run (left out): " + ", ".join(ctx.unranked), style="yellow")
    packing = Table("", "rank", "file", "tokens", expand=False, title=(
        f"packed {ctx.packed_tokens:,} of {ctx.budget_tokens:,} tokens"
        + (f" (window allows {ctx.window_limit_tokens:,})" if ctx.window_limit_tokens else "")
    ))
    for label, items, style in (("packed", ctx.packed, "green"), ("cut", ctx.cut, "yellow")):
        for item in items:
            tokens = "-" if item.tokens is None else f"{item.tokens:,}"
            packing.add_row(Text(label, style=style), str(item.rank or "-"), item.path, tokens)
    yield packing


def _runs(turn: Turn, full: bool) -> Iterator[RenderableType]:
    for run in turn.runs:
        title = f"{run.label}: exit {run.exit_code} ({run.outcome})"
        yield Panel(collapse(run.output, full, 6), title=title, title_align="left", border_style="blue")


def turn_section(turn: Turn, full: bool) -> RenderableType:
    parts: list[RenderableType] = []
    line = Text(f"turn {turn.number}: {turn.action.replace('_', ' ')}", style="bold")
    if turn.applied is not None:
        line.append("  edits applied" if turn.applied else "  edits NOT applied",
                    style="green" if turn.applied else "red")
    parts.append(line)
    parts.append(Panel(collapse(turn.model_text, full), title="model", title_align="left", border_style="magenta"))
    if turn.error:
        why = "unreadable answer" if turn.action == "parse_error" else "why the edits were not applied"
        parts.append(Text(f"{why}: {turn.error}", style="red"))
    if turn.test is not None and full:
        parts.append(Panel(Text(turn.test), title="the test as it stood", title_align="left", border_style="cyan"))
    parts.extend(_runs(turn, full))
    if not turn.runs and turn.observation:
        parts.append(Panel(collapse(turn.observation, full), title="feedback", title_align="left", border_style="blue"))
    return RichGroup(*parts)


def trajectory_section(view: TrajectoryView, full: bool) -> Iterator[RenderableType]:
    style = STATUS_STYLE.get(view.status, "white")
    yield Rule(f"{view.kind} {view.index}: {view.trajectory_id}", align="left")
    ending = Text.assemble("ended: ", (view.status, style))
    if view.failure_kind:
        ending.append(f" ({view.failure_kind}: {view.failure or ''})", style="red")
    ending.append(f"\nspent: {money(view.spent)}")
    if view.choice is not None:
        ending.append(f"\nchose candidate {view.choice}")
    yield ending
    if full:
        yield Panel(collapse(view.opening, full), title="opening message", title_align="left", border_style="blue")
    for turn in view.turns:
        yield turn_section(turn, full)
    if view.test is not None and full:
        yield Panel(collapse(view.test, full), title="final test", title_align="left", border_style="cyan")
    if view.patch:
        yield Panel(collapse(view.patch, full), title="candidate patch", title_align="left", border_style="green")


def trajectory_summary(view: InstanceView) -> RenderableType:
    table = Table("trajectory", "status", "turns", "tokens out", "cost $", title="trajectories", expand=False)
    for t in view.trajectories:
        status = Text(t.status + (f" ({t.failure_kind})" if t.failure_kind else ""), style=STATUS_STYLE.get(t.status, ""))
        table.add_row(f"{t.kind}/{t.index}" if t.kind != "selection" else t.trajectory_id.split("/", 1)[-1], status,
                      str(len(t.turns)), f"{t.spent.output_tokens:,}", f"{t.spent.cost_usd:.4f}")
    table.caption = "show RUN INSTANCE KIND/INDEX for one trajectory in full"
    return table


def grid_table(grid: Grid, letters: dict[str, str]) -> Table:
    table = Table(title="test x candidate", expand=False)
    table.add_column("test")
    for column in grid.columns:
        table.add_column("orig" if column == ORIGINAL else letters.get(column, column[:6]), justify="center")
    flaky = set(grid.flaky)
    for test in grid.tests:
        row = grid.cells.get(test, {})
        cells = []
        for column in grid.columns:
            outcome = row.get(column)
            mark = "-" if outcome is None else OUTCOME_MARKS.get(outcome, outcome)
            cells.append(Text(mark + ("~" if (test, column) in flaky else ""),
                              style="green" if outcome in ("fixed", "pass") else ""))
        counted = "*" if test in grid.counted else " "
        table.add_row(f"{counted}{test}", *cells)
    table.caption = ("✓ fixed  ✗ not fixed  ! crashed  T timed out  ~ flaky  * counted (fails on the original)"
                     if grid.exact else "✓ passes  · does not (rebuilt from votes)  * counted")
    return table


def candidates_section(view: InstanceView, full: bool) -> Iterator[RenderableType]:
    yield Rule("candidates", align="left")
    if not view.groups:
        yield Text("no candidates", style="dim")
        return
    letters = {g.key: column_letter(i) for i, g in enumerate(view.groups)}
    table = Table("", "patch", "votes", "lines", "members", "grade", expand=False)
    for g in view.groups:
        grade = "-" if g.grade is None else g.grade
        table.add_row(
            Text(letters[g.key] + (" ◀ selected" if g.selected else ""), style="bold green" if g.selected else ""),
            g.key[:10], "-" if g.votes is None else str(g.votes), "-" if g.changed_lines is None else str(g.changed_lines),
            Text(", ".join(m.rsplit("/", 2)[-2] + "/" + m.rsplit("/", 1)[-1] for m in g.members), overflow="fold"),
            Text(grade, style="green" if grade == "resolved" else ("red" if grade != "-" else "")),
        )
    yield table
    if view.grid is not None:
        yield grid_table(view.grid, letters)
    if full:
        for g in view.groups:
            yield Panel(Text(g.patch), title=f"{letters[g.key]}: {g.key[:10]}", title_align="left")


def selection_section(view: InstanceView) -> Iterator[RenderableType]:
    yield Rule("selection", align="left")
    sel = view.selection
    if sel is None:
        yield Text("no selection recorded", style="dim")
        return
    text = Text.assemble("method: ", (sel.method, "bold"), f"\nchosen: {sel.candidate_id or '(none)'}")
    if sel.reason:
        text.append(f"\nwhy: {escape(sel.reason)}", style="yellow")
    if sel.trajectory_id:
        text.append(f"\nselection trajectory: {sel.trajectory_id}")
    if sel.skipped_empty or sel.skipped_unparsable:
        text.append(f"\nskipped: {sel.skipped_empty} empty, {sel.skipped_unparsable} unreadable patch(es)")
    yield text


def instance_renderables(view: InstanceView, full: bool) -> Iterator[RenderableType]:
    """The whole instance: header, context, candidates and grid, selection, trajectories."""
    yield header(view)
    yield from context_section(view, full)
    yield from candidates_section(view, full)
    yield from selection_section(view)
    if view.trajectories:
        yield trajectory_summary(view)
    for t in view.trajectories:
        yield from trajectory_section(t, full)
