"""``codemonkeys show RUN INSTANCE [TRAJECTORY]``: why an instance ended as it did, from the store.

Context decisions and packing, every trajectory turn by turn, the candidates
with the test x candidate grid, the selection and grades where the run has
them. The store is opened read-only; the data comes from
:mod:`codemonkeys.report.instance`, the same layer as the report's instance pages.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from ..errors import UserError
from ..store import RunStore


def register(app: typer.Typer) -> None:
    @app.command("show")
    def show(
        run_dir: Path = typer.Argument(..., help="A run directory."),
        instance: str = typer.Argument(..., help="An instance id of the run."),
        trajectory: str = typer.Argument(None, help="One trajectory in full: KIND/INDEX (editing/0) or its id."),
        full: bool = typer.Option(False, "--full", help="Show long texts in full instead of collapsed."),
        as_json: bool = typer.Option(False, "--json", help="Print the data as JSON instead."),
    ) -> None:
        """Inspect one instance of a run: context, trajectories turn by turn, candidates, selection."""
        from ..report.instance import instance_view
        from ..report.terminal import instance_renderables, trajectory_section

        with RunStore.open_read_only(run_dir) as store:
            try:
                view = instance_view(store, instance)
            except KeyError:
                known = [s["instance_id"] for s in store.instance_states()]
                hint = ", ".join(known[:5]) + (" ..." if len(known) > 5 else "")
                raise UserError(f"{run_dir} has no instance {instance!r} (it has {len(known)}: {hint})") from None
        selected = None
        if trajectory is not None:
            selected = view.trajectory(trajectory)
            if selected is None:
                names = ", ".join(f"{t.kind}/{t.index}" for t in view.trajectories) or "none"
                raise UserError(f"{instance} has no trajectory {trajectory!r} (it has: {names})")
        if as_json:
            data = view.as_dict() if selected is None else {"instance_id": instance, "trajectory": _plain(selected)}
            typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
            return
        console = Console()
        parts = instance_renderables(view, full) if selected is None else trajectory_section(selected, True)
        for part in parts:
            console.print(part)


def _plain(view: object) -> dict[str, object]:
    from dataclasses import asdict

    return asdict(view)  # type: ignore[call-overload,no-any-return]
