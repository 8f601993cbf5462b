"""``report --grade``: the run's config, environments and sandboxes, wired to :func:`~codemonkeys.report.run_grades.grade_run`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import yaml
from rich.console import Console

from ..config import Config
from ..errors import UserError
from ..report.run_grades import EnvironmentGrader, GradeTally, PatchGrader, grade_run
from ..store import RunStore


def run_config(store: RunStore) -> Config:
    """The config the run last ran with (the store keeps every attempt's)."""
    history = json.loads(store.get_meta("config_history") or "[]")
    if not history:
        raise UserError(f"{store.path} records no run config: was it made by `codemonkeys run`?")
    return Config.model_validate(yaml.safe_load(history[-1]))


def environment_grader(config: Config, console: Console) -> PatchGrader:
    from ..pipeline.build import spec_registry
    from ..pipeline.environments import environments_for
    from ..sandbox.factory import make_sandbox_factory

    factory = make_sandbox_factory(config.sandbox, network=config.grading.network)
    progress = lambda message: console.print(f"[dim]{message}[/]", highlight=False)  # noqa: E731
    environments = environments_for(factory, config, progress=progress)
    return EnvironmentGrader(
        factory, environments, spec_registry(config), config.environment.test_timeout_s,
        reinstall=config.environment.grading_reinstall, network=config.grading.network,
    )


def grade_stored_run(
    run_dir: Path, *, candidates: bool, console: Console, grader: PatchGrader | None = None
) -> GradeTally:
    """Grade the run's patches into its store; ``grader`` defaults to the run's own environments."""
    with RunStore.open_existing(run_dir) as store:
        chosen = grader or environment_grader(run_config(store), console)

        def show(iid: str, key: str, grade: dict[str, object]) -> None:
            console.print(f"{iid} {key[:10]}: [bold]{grade['status']}[/] {grade.get('cause') or ''}", highlight=False)

        return asyncio.run(grade_run(store, chosen, candidates=candidates, on_grade=show))
