"""``codemonkeys context``: read every file, rank and pack; or estimate it, or report its recall."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..config import Config, load_config
from ..context.batch import Outcome, build_stage, run_many
from ..context.estimate import InstanceEstimate, estimate_instance, total
from ..context.files import FileFilter, model_tokenizer
from ..context.relevance import RelevancePrompt
from ..context.report import RecallReport, context_recall
from ..context.stage import ContextTask, ProgressEvent
from ..errors import RepoError, UserError
from ..examples import resolve_dataset
from ..llm.preflight import preflight
from ..llm.pricing import PriceTable
from ..store import RunStore
from ..swebench.instances import Instance, load_instances, split_ids
from ..pipeline.build import RunCore, open_run, repo_source
from .common import ensure_run_dir
from ..swebench.repo import RepoSource


def register(app: typer.Typer) -> None:
    @app.command("context")
    def context(
        run_dir: Path = typer.Option(
            ..., "--run-dir", help="Run directory (its store keeps every decision)."
        ),
        config: str = typer.Option(
            "verified", "--config", "-c", help="Config file or shipped config name."
        ),
        dataset: str = typer.Option(
            None, "--dataset", help="SWE-bench JSONL/JSON/parquet file or hub name."
        ),
        instance_ids: list[str] = typer.Option(
            None, "--instance-ids", help="Ids, comma separated or repeated."
        ),
        mirror_dir: Path = typer.Option(
            None, "--mirror-dir", help="Directory of <owner>__<repo> git mirrors."
        ),
        estimate: bool = typer.Option(
            False, "--estimate", help="Count files, tokens and cost; call no model."
        ),
        report: bool = typer.Option(
            False, "--report", help="Context recall of the stored results."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
        overrides: list[str] = typer.Argument(None, help="key.path=value config overrides."),
    ) -> None:
        """Read every file of each instance's repo, rank the relevant ones and pack them into the budget."""
        ids = [i for text in instance_ids or [] for i in split_ids(text)]
        if estimate and report:
            raise UserError("--estimate and --report cannot be combined")
        extra = [f"environment.mirror_dir={Path(mirror_dir).resolve()}"] if mirror_dir is not None else []
        if dataset is not None and not report:  # ``--dataset example``: the bundled instance, as for run
            dataset, example = resolve_dataset(dataset, ensure_run_dir(run_dir))
            extra = [*example, *extra]
        cfg = load_config(Path(config) if Path(config).exists() else config, [*extra, *(overrides or [])])
        if report:
            _report(run_dir, dataset, ids, as_json)
            return
        if dataset is None:
            raise UserError("--dataset is required (except with --report)")
        instances = load_instances(dataset, instance_ids=ids or None)
        if estimate:
            with RunStore.open(run_dir) as store:
                tasks, failed = _tasks(repo_source(cfg), instances)
                _estimate(cfg, store, tasks, as_json)
        else:
            # The run's own wiring: the same repository cache, models, budget and price checks as ``run``.
            preflight(cfg, os.environ, stages=("relevance", "ranking"))  # before any repository or paid call
            with open_run(cfg, run_dir, instances, os.environ, stages=("relevance", "ranking")) as core:
                tasks, failed = _tasks(core.repos, instances)
                for outcome in failed:
                    core.store.set_instance_state(
                        outcome.instance_id, "context", "failed", outcome.failure_kind, outcome.failure
                    )
                _run(core, tasks, failed, as_json)
        if failed:
            raise typer.Exit(1)


def _tasks(
    source: RepoSource, instances: list[Instance]
) -> tuple[list[ContextTask], list[Outcome]]:
    """A task per instance whose repository is at hand; the others as failed outcomes."""
    tasks: list[ContextTask] = []
    failed: list[Outcome] = []
    for instance in instances:
        try:
            repo = source.ensure_commit(instance.repo, instance.base_commit)
        except RepoError as exc:
            Console(stderr=True).print(f"[red]{instance.instance_id}: {exc}", highlight=False)
            failed.append(
                Outcome(instance.instance_id, failure_kind=str(exc.kind), failure=str(exc))
            )
            continue
        tasks.append(
            ContextTask(
                instance.instance_id, instance.problem_statement, repo, instance.base_commit
            )
        )
    return tasks, failed


# --- estimate -----------------------------------------------------------------


def _money(value: float | None) -> str:
    return "unpriced" if value is None else f"{value:.2f}"


def _estimate(cfg: Config, store: RunStore, tasks: list[ContextTask], as_json: bool) -> None:
    relevance = cfg.models.relevance
    prompt = RelevancePrompt.load(
        max_tokens=relevance.max_output_tokens, temperature=relevance.temperature
    )
    tokenizer = model_tokenizer(relevance.model)
    prices = PriceTable(cfg.pricing)
    estimates: list[InstanceEstimate] = [
        estimate_instance(
            task,
            file_filter=FileFilter.from_config(cfg.context),
            tokenizer=tokenizer,
            cache=store,
            prompt=prompt,
            prices=prices,
            model=relevance.model,
            max_file_tokens=cfg.context.max_file_tokens,
            ranking_runs=cfg.context.ranking_runs,
        )
        for task in tasks
    ]
    summed = total(estimates)
    if as_json:
        rows = [{**_fields(e), "shared_share": round(e.shared_share, 4)} for e in estimates]
        typer.echo(
            json.dumps(
                {"model": relevance.model, "instances": rows, "total": _fields(summed)}, indent=2
            )
        )
        return
    table = Table(title=f"Relevance calls with {relevance.model} (no model called)")
    for column in (
        "instance",
        "files",
        "skipped",
        "prompt tokens",
        "shared prefix",
        "worst case $",
        "cached prefix $",
    ):
        table.add_column(column, justify="left" if column == "instance" else "right")
    for e in estimates:
        table.add_row(
            e.instance_id,
            f"{e.files:,}",
            str(e.skipped),
            f"{e.prompt_tokens:,}",
            f"{e.shared_share:.1%}",
            _money(e.worst_case_usd),
            _money(e.cached_prefix_usd),
        )
    share = summed.shared_prefix_tokens / summed.prompt_tokens if summed.prompt_tokens else 0.0
    table.add_row(
        f"total ({summed.instances})",
        f"{summed.files:,}",
        "",
        f"{summed.prompt_tokens:,}",
        f"{share:.1%}",
        _money(summed.worst_case_usd),
        _money(summed.cached_prefix_usd),
        style="bold",
    )
    console = Console()
    console.print(table)
    console.print(
        f"plus up to {cfg.context.ranking_runs} ranking call(s) per instance with {cfg.models.ranking.model} "
        "over the relevant files' summaries (not priced: their size is known only after the relevance calls)"
    )


def _fields(obj: object) -> dict[str, object]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}  # type: ignore[attr-defined]


# --- run ----------------------------------------------------------------------


@dataclass
class _Tally:
    """Running totals for the progress bar, from the stage's events."""

    prices: PriceTable
    files_total: int = 0
    files_done: int = 0
    tokens: int = 0
    cost: float = 0.0
    unpriced: bool = False
    instances_done: int = 0
    on_change: list[Callable[[], None]] = field(default_factory=list)

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "enumerated":
            self.files_total += event.files
        elif event.kind == "file":
            self.files_done += event.files
        elif event.kind in ("done", "failed"):
            self.instances_done += 1
        if not event.cached and event.model:
            self.tokens += event.usage.prompt_tokens + event.usage.output_tokens
            cost = self.prices.cost(event.model, event.usage)
            if cost is None:
                self.unpriced = self.unpriced or event.usage.prompt_tokens > 0
            else:
                self.cost += cost
        for callback in self.on_change:
            callback()


def _run(core: RunCore, tasks: list[ContextTask], failed: list[Outcome], as_json: bool) -> None:
    """The context stage over ``tasks``; packing is clamped to the editing model's window (``open_run``)."""
    cfg, store, hub = core.config, core.store, core.hub
    tally = _Tally(hub.prices)
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        disable=as_json,
    )
    files_bar = progress.add_task("files scored", total=None, detail="")
    instances_bar = progress.add_task("instances", total=len(tasks), detail="")

    def refresh() -> None:
        cost = f"${tally.cost:.4f}" + ("+unpriced" if tally.unpriced else "")
        progress.update(
            files_bar,
            total=tally.files_total or None,
            completed=tally.files_done,
            detail=f"{tally.tokens:,} tokens  {cost}",
        )
        progress.update(instances_bar, completed=tally.instances_done)

    tally.on_change.append(refresh)
    stage = build_stage(cfg, hub, store, progress=tally)
    with progress:
        outcomes = asyncio.run(run_many(stage, tasks, max_concurrent=cfg.max_concurrent_instances))
    outcomes += failed
    _print_outcomes(outcomes, as_json)
    if any(o.result is None for o in outcomes):
        raise typer.Exit(1)


def _print_outcomes(outcomes: list[Outcome], as_json: bool) -> None:
    if as_json:
        payload = [
            {"instance_id": o.instance_id, "failure_kind": o.failure_kind, "failure": o.failure}
            | ({"result": o.result.to_data()} if o.result else {})
            for o in outcomes
        ]
        typer.echo(json.dumps(payload, indent=2))
        return
    table = Table(title="Context")
    for column in (
        "instance",
        "files",
        "relevant",
        "parse fail",
        "errors",
        "rankings",
        "packed",
        "tokens",
        "status",
    ):
        table.add_column(column, justify="left" if column in ("instance", "status") else "right")
    for o in outcomes:
        r = o.result
        if r is None:
            table.add_row(
                o.instance_id, *[""] * 7, f"[red]{o.failure_kind}: {(o.failure or '')[:60]}"
            )
            continue
        table.add_row(
            o.instance_id,
            str(r.files),
            str(len(r.relevant)),
            str(len(r.parse_failures)),
            str(len(r.errors)),
            f"{len(r.rankings)}/{len(r.rankings) + len(r.ranking_failures)}",
            str(len(r.included)),
            f"{r.packed_tokens:,}",
            "done" if r.complete else "[yellow]incomplete",
        )
    Console().print(table)


# --- report -------------------------------------------------------------------


def _report(run_dir: Path, dataset: str | None, ids: list[str], as_json: bool) -> None:
    with RunStore.open_read_only(run_dir) as store:
        if dataset is not None:
            gold = [
                (i.instance_id, i.patch) for i in load_instances(dataset, instance_ids=ids or None)
            ]
        else:
            wanted = set(ids)
            gold = [
                (row["instance_id"], str(store.instance_data(row["instance_id"]).get("patch", "")))
                for row in store.instance_states()
                if not wanted or row["instance_id"] in wanted
            ]
        recall = context_recall(store, gold)
    _print_recall(recall, as_json)


def _print_recall(recall: RecallReport, as_json: bool) -> None:
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "instances": len(recall.rows),
                    "recall": recall.recall,
                    "relevance_recall": recall.relevance_recall,
                    "read_recall": recall.read_recall,
                    "missing": list(recall.missing),
                    "rows": [
                        {
                            "instance_id": r.instance_id,
                            "gold": r.gold,
                            "read": r.read,
                            "relevant": r.relevant,
                            "packed": r.packed,
                            "hit": r.hit,
                            "complete": r.complete,
                            "fallback": r.fallback,
                        }
                        for r in recall.rows
                    ],
                },
                indent=2,
            )
        )
        return
    table = Table(title="Context recall (gold patch's edited files)")
    for column in ("instance", "gold files", "read", "relevant", "packed", "all packed"):
        table.add_column(column, justify="left" if column == "instance" else "right")
    for r in recall.rows:
        n = len(r.gold)
        table.add_row(
            r.instance_id,
            str(n),
            f"{len(r.read)}/{n}",
            f"{len(r.relevant)}/{n}",
            f"{len(r.packed)}/{n}",
            "[green]yes" if r.hit else "[red]no",
        )
    console = Console()
    console.print(table)
    fallbacks = [r.instance_id for r in recall.rows if r.fallback]
    if fallbacks:
        console.print(f"ranked lexically (every ranking run failed): {', '.join(fallbacks)}")
    console.print(
        f"recall {recall.recall:.1%} of {len(recall.rows)} instance(s)  "
        f"(all relevant: {recall.relevance_recall:.1%}, all read: {recall.read_recall:.1%})"
    )
    if recall.missing:
        console.print(
            f"no context result yet for {len(recall.missing)}: {', '.join(recall.missing[:10])}"
        )
