"""``codemonkeys select RUN_DIR``: vote and select among each instance's candidates; ``--report`` shows the result.

The wiring here (environment, sandbox pool, cached runner, selection model
per instance) is shared with ``codemonkeys ensemble``. The environment of an
instance comes from one injected function (:data:`EnvProvider`); the default
builds or finds its image with :class:`~codemonkeys.env.images.ImageBuilder`.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ..config import Config
from ..ensemble.load import Labels, LabelStatus, load_labels
from ..errors import UserError, failure_kind
from ..execution import SandboxPool, TestRunner
from ..execution.sources import SandboxSources
from ..llm.registry import ModelHub
from ..prompting import Prompt
from ..sandbox.base import EnvironmentRef, SandboxFactory
from ..selection import (
    SelectionDeps,
    SelectionInputs,
    SelectionOutcome,
    group_candidates,
    select_instance,
    stored_candidates,
    stored_tests,
    usable_candidates,
)
from ..store import RunStore
from ..swebench.instances import Instance
from .common import load_cli_config

DATASET_HELP = "SWE-bench JSONL/JSON/parquet file or hub name (default: the instances the run registered)."

EnvProvider = Callable[[Instance], Awaitable[EnvironmentRef]]
"""The environment (image) of an instance; raises BuildError when there is none."""
Prepare = Callable[[Instance, TestRunner, SandboxSources], Awaitable[None]]
"""Work before selection inside the instance's sandbox pool (the ensemble generates tests)."""


def image_env_provider(cfg: Config, console: Console) -> EnvProvider:
    """Images from the environment builder, one build at a time (builds are heavy; hits are instant)."""
    from ..env.images import ImageBuilder

    builder = ImageBuilder(cfg.environment, progress=lambda message: console.print(f"[dim]{message}[/]"))
    lock = asyncio.Lock()

    async def env_for(instance: Instance) -> EnvironmentRef:
        async with lock:
            built = await asyncio.to_thread(builder.ensure_instance, instance)
        return built.ref

    return env_for


@dataclass
class InstanceResult:
    instance_id: str
    outcome: SelectionOutcome | None = None
    executed: int = 0
    failure_kind: str | None = None
    failure: str | None = None


async def select_many(
    cfg: Config,
    store: RunStore,
    hub: ModelHub,
    factory: SandboxFactory,
    env_for: EnvProvider,
    instances: Sequence[Instance],
    *,
    prepare: Prepare | None = None,
    on_done: Callable[[InstanceResult], None] | None = None,
    ensemble: bool = False,
) -> list[InstanceResult]:
    """Select for every instance, a few at a time; each instance is a failure boundary."""
    gate = asyncio.Semaphore(cfg.max_concurrent_instances)
    prompt = Prompt("selection.j2")

    def inputs(instance: Instance) -> SelectionInputs:
        iid = instance.instance_id
        return SelectionInputs(
            iid, instance.problem_statement, stored_candidates(store, iid), stored_tests(store, iid), ensemble=ensemble
        )

    async def one(instance: Instance) -> InstanceResult:
        iid = instance.instance_id
        result = InstanceResult(iid)
        async with gate:
            try:
                if len(group_candidates(usable_candidates(inputs(instance).candidates)[0])) < 2:
                    # Nothing to vote on: no environment, no tests, no model.
                    result.outcome = await select_instance(_deps(cfg, store, hub, None, None, prompt, iid), inputs(instance))
                else:
                    env = await env_for(instance)
                    async with SandboxPool(factory, env, cfg.sandbox.pool_size) as pool:
                        runner = TestRunner(pool, store, timeout_s=cfg.selection.test_timeout_s)
                        sources = SandboxSources(pool)
                        if prepare is not None:
                            await prepare(instance, runner, sources)
                        deps = _deps(cfg, store, hub, runner, sources, prompt, iid)
                        result.outcome = await select_instance(deps, inputs(instance))
                        result.executed = runner.executed
                store.set_instance_state(iid, "selection", "done")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the instance boundary
                result.failure_kind, result.failure = str(failure_kind(exc)), f"{type(exc).__name__}: {exc}"[:2000]
                store.set_instance_state(iid, "selection", "failed", result.failure_kind, result.failure)
        if on_done is not None:
            on_done(result)
        return result

    return list(await asyncio.gather(*(one(instance) for instance in instances)))


def _deps(cfg: Config, store: RunStore, hub: ModelHub, runner: Any, sources: Any, prompt: Prompt, iid: str) -> SelectionDeps:
    return SelectionDeps(
        chat=_LazyChat(hub, iid), store=store, runner=runner, sources=sources, prompt=prompt,
        model=cfg.models.selection, config=cfg.selection,
    )


class _LazyChat:
    """The selection gateway, built on first use: instances with one candidate need no API key."""

    def __init__(self, hub: ModelHub, instance_id: str) -> None:
        self._hub, self._iid = hub, instance_id

    @property
    def name(self) -> str:
        return self._hub.spec("selection").label

    async def complete(self, request, tag):  # type: ignore[no-untyped-def]
        return await self._hub.gateway("selection", self._iid).complete(request, tag)


def run_instances(store: RunStore, dataset: str | None, ids: list[str], split: str = "test") -> list[Instance]:
    """Instances from the dataset (registered in the store), else those the run registered."""
    from ..swebench.instances import load_instances

    if dataset is not None:
        instances = load_instances(dataset, split=split, instance_ids=ids or None)
        for instance in instances:
            store.add_instance(instance.instance_id, instance.repo, instance.model_dump(mode="json"))
        return instances
    known = [row["instance_id"] for row in store.instance_states()]
    unknown = sorted(set(ids) - set(known))
    if unknown:
        raise UserError(f"the run has no instance(s) {', '.join(unknown)}; pass --dataset to add them")
    return [Instance.model_validate(store.instance_data(i)) for i in (ids or known)]


def outcome_table(results: Sequence[InstanceResult]) -> Table:
    table = Table(title="Selection")
    for column in ("instance", "method", "selected", "votes", "distinct", "tests", "cells run", "note"):
        table.add_column(column, justify="right" if column in ("votes", "distinct", "tests", "cells run") else "left")
    for r in results:
        o = r.outcome
        if o is None:
            table.add_row(r.instance_id, "[red]failed", "", "", "", "", "", f"{r.failure_kind}: {(r.failure or '')[:80]}")
            continue
        votes = str(o.top[0].votes) if o.top and o.matrix is not None else "-"
        tests = "-" if o.matrix is None else str(len(o.matrix.tests))
        table.add_row(
            r.instance_id, o.method, o.candidate_id or "-", votes, str(len(o.ranking)), tests, str(r.executed),
            (o.reason or "")[:80],
        )
    return table


# --- report -----------------------------------------------------------------------------------


def selection_rows(store: RunStore, labels: Labels | None) -> list[dict[str, Any]]:
    """Per instance with candidates or a selection: counts, the selection, its status."""
    ids = sorted({row["instance_id"] for row in store.instance_states()} | {s["instance_id"] for s in store.selections()})
    rows = []
    for iid in ids:
        candidates = stored_candidates(store, iid)
        selection = store.selection(iid)
        if not candidates and selection is None:
            continue
        data = selection["data"] if selection else {}
        ranking = data.get("ranking", [])
        rows.append({
            "instance_id": iid,
            "candidates": len(candidates),
            "distinct": len(group_candidates(usable_candidates(candidates)[0])),
            "tests": data.get("tests", 0),
            "counted_tests": len(data.get("counted_tests", [])),
            "top_votes": ranking[0]["votes"] if ranking else None,
            "method": selection["method"] if selection else None,
            "selected": selection["candidate_id"] if selection else None,
            "status": None if labels is None or not selection or selection["candidate_id"] is None
            else str(labels.status(iid)),
        })
    return rows


def report_selection(store: RunStore, labels: Labels | None, as_json: bool) -> None:
    rows = selection_rows(store, labels)
    totals = {
        "instances": len(rows),
        "candidates": sum(r["candidates"] for r in rows),
        "distinct": sum(r["distinct"] for r in rows),
        "selected": sum(1 for r in rows if r["selected"]),
        "methods": dict(Counter(r["method"] for r in rows if r["method"])),
    }
    if labels is not None:
        totals["resolved"] = sum(1 for r in rows if r["status"] == LabelStatus.RESOLVED)
    if as_json:
        typer.echo(json.dumps({"instances": rows, "total": totals}, indent=2))
        return
    table = Table(title="Selections")
    columns = ["instance", "candidates", "distinct", "tests", "counted", "top votes", "method", "selected"]
    for column in columns + (["status"] if labels else []):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["instance_id"], str(r["candidates"]), str(r["distinct"]), str(r["tests"]), str(r["counted_tests"]),
            "-" if r["top_votes"] is None else str(r["top_votes"]), r["method"] or "-", r["selected"] or "-",
            *([r["status"] or "-"] if labels else []),
        )
    console = Console()
    console.print(table)
    line = (
        f"{totals['instances']} instances, {totals['candidates']} candidates ({totals['distinct']} distinct), "
        f"{totals['selected']} selected; methods: {totals['methods']}"
    )
    if labels is not None:
        n = totals["instances"] or 1
        line += f"; selected resolved: {totals['resolved']} ({100 * totals['resolved'] / n:.1f}%)"
    console.print(line)


def register(app: typer.Typer) -> None:
    @app.command("select")
    def select(
        run_dir: Path = typer.Argument(..., help="The run directory holding the candidates."),
        dataset: str = typer.Option(None, "--dataset", help=DATASET_HELP),
        instance_ids: str = typer.Option(None, "--instance-ids", help="Comma-separated ids (default: all)."),
        split: str = typer.Option("test", help="Dataset split (hub datasets)."),
        mirror_dir: Path = typer.Option(None, "--mirror-dir", help="DIR/<owner>__<repo> git mirrors instead of GitHub."),
        report: bool = typer.Option(False, "--report", help="Show the recorded selections; run nothing."),
        labels: Path = typer.Option(None, "--labels", help="With --report: grades of the exported selections "
                                    "(SWE-bench results.json or this project's evaluation report)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
        config: str = typer.Option(None, "--config", help="Config file or shipped config name."),
        overrides: list[str] = typer.Option(None, "--set", help="key.path=value config override."),
    ) -> None:
        """Vote with the generated tests and let the selection model choose, per instance."""
        from ..swebench.instances import split_ids

        if report:
            with RunStore.open_read_only(run_dir) as store:
                report_selection(store, load_labels(labels) if labels else None, as_json)
            return
        if labels is not None:
            raise UserError("--labels goes with --report")
        cfg = load_cli_config(config, overrides, mirror_dir)
        console = Console(stderr=True)
        with RunStore.open_existing(run_dir) as store:
            instances = run_instances(store, dataset, split_ids(instance_ids), split)
            results = asyncio.run(_select(cfg, store, instances, console))
        _finish(results, as_json)


async def _select(
    cfg: Config, store: RunStore, instances: list[Instance], console: Console, prepare_factory: Any = None, *, ensemble: bool = False
) -> list[InstanceResult]:
    from ..budget import BudgetGuard
    from ..llm.registry import check_prices, resolve_secrets
    from ..sandbox.factory import make_sandbox_factory

    stages = ("selection", "testing") if prepare_factory is not None else ("selection",)
    check_prices(cfg, stages)
    hub = ModelHub(
        cfg, store, resolve_secrets(cfg, os.environ, stages),
        budget=BudgetGuard.for_run(cfg.budget, store),
    )
    try:
        prepare = prepare_factory(hub) if prepare_factory is not None else None
        return await select_many(
            cfg, store, hub, make_sandbox_factory(cfg.sandbox), image_env_provider(cfg, console), instances,
            prepare=prepare,
            ensemble=ensemble,
            on_done=lambda r: console.print(
                f"{r.instance_id}: {r.outcome.method if r.outcome else f'failed ({r.failure_kind})'}", highlight=False
            ),
        )
    finally:
        await hub.aclose()


def _finish(results: list[InstanceResult], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([
            {"instance_id": r.instance_id, "failure_kind": r.failure_kind, "failure": r.failure, "executed": r.executed}
            | ({"method": r.outcome.method, "candidate_id": r.outcome.candidate_id, **r.outcome.record()} if r.outcome else {})
            for r in results
        ], indent=2))
    else:
        Console().print(outcome_table(results))
    if any(r.outcome is None for r in results):
        raise typer.Exit(1)
