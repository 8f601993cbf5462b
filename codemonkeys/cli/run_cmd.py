"""``codemonkeys run``: the whole job, and ``codemonkeys status``: where every instance stands."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..config import Config, load_config
from ..errors import UserError
from ..examples import resolve_dataset
from ..store import RunStore
from ..swebench.instances import Instance, load_instances, split_ids
from .common import ensure_run_dir
from ..tables import add_number_column, add_text_column, compact_table


def _prepare(
    config_name: str, overrides: list[str], dataset: str | None, ids: list[str], mirror_dir: Path | None, run_dir: Path
) -> tuple[Config, list[Instance]]:
    """The config and instances of a run; ``--dataset example`` is the bundled instance."""
    ensure_run_dir(run_dir)
    if dataset is not None:
        dataset, extra = resolve_dataset(dataset, run_dir)
        overrides = [*extra, *overrides]
    if mirror_dir is not None:
        overrides = [f"environment.mirror_dir={mirror_dir}", *overrides]
    config = load_config(Path(config_name) if Path(config_name).exists() else config_name, overrides)
    if dataset is None:
        raise UserError("--dataset is required: a SWE-bench JSONL/JSON/parquet file, a hub name, or 'example'")
    return config, load_instances(dataset, instance_ids=ids or None)


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        config: str = typer.Argument(..., help="Config file or shipped config name (verified, example)."),
        overrides: list[str] = typer.Argument(None, help="key.path=value overrides."),
        dataset: str = typer.Option(None, "--dataset", help="JSONL/JSON/parquet file, hub name, or 'example'."),
        instance_ids: list[str] = typer.Option(None, "--instance-ids", help="Ids, comma separated or repeated."),
        mirror_dir: Path = typer.Option(None, "--mirror-dir", help="Directory of <owner>__<repo> git mirrors."),
        run_dir: Path = typer.Option(..., "--run-dir", help="Run directory; rerun the same command to resume."),
        estimate: bool = typer.Option(False, "--estimate", help="Project tokens and dollars; spend nothing."),
        retry_infra: bool = typer.Option(False, "--retry-infra", help="Redo only instances that failed for infrastructure reasons."),
        allow_oracle: bool = typer.Option(False, "--allow-oracle", help="Export predictions made with an oracle model."),
        as_json: bool = typer.Option(False, "--json", help="With --estimate: print the projection as JSON."),
    ) -> None:
        """Context, generation, selection and export for every instance, resumable."""
        ids = [i for text in instance_ids or [] for i in split_ids(text)]
        if as_json and not estimate:
            raise UserError("--json goes with --estimate (a run's tables are `status --json` and `costs --json`)")
        cfg, instances = _prepare(config, overrides or [], dataset, ids, mirror_dir, run_dir)
        if estimate:
            from ..pipeline.estimate import estimate_run, print_estimate

            if as_json:
                rows = estimate_run(cfg, instances, run_dir)
                typer.echo(json.dumps([
                    {"stage": r.stage, "prompt_tokens": r.prompt_tokens, "usd": r.usd, "basis": r.source,
                     "instances": r.instances} for r in rows
                ], indent=2))
                return
            print_estimate(cfg, instances, run_dir)
            return
        _run(cfg, instances, run_dir, retry_infra=retry_infra, allow_oracle=allow_oracle)

    @app.command("generate")
    def generate_command(
        config: str = typer.Option("verified", "--config", "-c", help="Config file or shipped config name."),
        overrides: list[str] = typer.Argument(None, help="key.path=value overrides."),
        dataset: str = typer.Option(None, "--dataset", help="JSONL/JSON/parquet file, hub name, or 'example'."),
        instance_ids: list[str] = typer.Option(None, "--instance-ids", help="Ids, comma separated or repeated."),
        mirror_dir: Path = typer.Option(None, "--mirror-dir", help="Directory of <owner>__<repo> git mirrors."),
        run_dir: Path = typer.Option(..., "--run-dir", help="Run directory; rerun the same command to resume."),
        retry_infra: bool = typer.Option(False, "--retry-infra", help="Redo only instances that failed for infrastructure reasons."),
    ) -> None:
        """Context and generation only: N testing-and-editing trajectories per instance, their candidates stored."""
        ids = [i for text in instance_ids or [] for i in split_ids(text)]
        cfg, instances = _prepare(config, overrides or [], dataset, ids, mirror_dir, run_dir)
        _run(cfg, instances, run_dir, retry_infra=retry_infra, allow_oracle=False, stop_after="generation")

    @app.command("status")
    def status(
        run_dir: Path = typer.Argument(..., help="A run directory."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Where every instance of a run stands: stage, status, trajectories, selection, failures."""
        with RunStore.open_read_only(run_dir) as store:
            rows = status_rows(store)
            windows = json.loads(store.get_meta("context_windows") or "[]")
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        console = Console()
        console.print(status_table(rows, f"status of {run_dir}", console.width))
        for row in rows:
            if row["failure"]:
                console.print(f"{row['instance_id']}: {row['failure']}", highlight=False, markup=False)
        fallbacks = [str(row["instance_id"]) for row in rows if row["context"] and row["context"]["fallback"]]  # type: ignore[index]
        if fallbacks:
            console.print(f"ranked lexically (every ranking run failed): {', '.join(fallbacks)}")
        if windows:
            console.print("context windows: " + ", ".join(
                f"{w['stage']} {w['tokens']:,} ({w['source']})" if w["tokens"] else f"{w['stage']} unknown" for w in windows
            ))


_KIND_SHORT = {"testing": "test", "editing": "edit", "generation": "gen", "selection": "sel", "ranking": "rank"}


def status_table(rows: list[dict[str, object]], title: str, width: int = 80) -> Table:
    """The status rows in ``width`` columns: trajectories as done/all per kind, failures printed below.

    Every column but the instance id is sized to its longest word, so text wraps
    between words; the id gets the rest and folds only when it must.
    """
    cells = [
        [
            str(row["instance_id"]),
            ("done" if row["status"] == "done" else f"{row['stage']} {row['status']}") + ("*" if row["failure"] else ""),
            str(row["plan"]), _trajectory_summary(row["trajectories"]), str(row["candidates"]),
            str(row["selection"]).replace("_", " "),  # wraps at the space, not mid-word
        ]
        for row in rows
    ]
    headers = ("instance", "state", "plan", "trajs", "cands", "selection")

    def longest(i: int, by: str | None) -> int:
        texts = [headers[i], *(cell[i] for cell in cells)]
        return max(len(part) for text in texts for part in (text.splitlines() if by is None else text.split()) or [""])

    sizes = [longest(1, " "), longest(2, " "), longest(3, None), longest(4, None), longest(5, " ")]
    instance = max(12, min(longest(0, None), width - sum(sizes) - len(headers)))
    table = compact_table(title)
    table.add_column("instance", width=instance, overflow="fold")
    for header, size in zip(headers[1:], sizes, strict=True):
        table.add_column(header, width=size, justify="right" if header == "cands" else "left", overflow="fold")
    for cell in cells:
        table.add_row(*cell)
    if any(row["failure"] for row in rows):
        table.caption = "* failed: the causes follow"
    return table


def _trajectory_summary(text: object) -> str:
    """``editing done: 4, editing failed: 1, testing done: 5`` as ``edit 4/5 test 5/5``."""
    if not isinstance(text, str) or text == "-":
        return "-"
    done: dict[str, int] = {}
    total: dict[str, int] = {}
    for part in text.split(", "):
        label, _, count = part.rpartition(": ")
        kind, _, status = label.partition(" ")
        total[kind] = total.get(kind, 0) + int(count or 0)
        done[kind] = done.get(kind, 0) + (int(count or 0) if status == "done" else 0)
    return "\n".join(f"{_KIND_SHORT.get(kind, kind)} {done[kind]}/{total[kind]}" for kind in total)


def status_rows(store: RunStore) -> list[dict[str, object]]:
    """One summary per instance, from the store."""
    rows = []
    for state in store.instance_states():
        iid = state["instance_id"]
        trajectories = store.trajectories(iid)
        statuses: dict[str, int] = {}
        for record in trajectories:
            statuses[f"{record.kind} {record.status}"] = statuses.get(f"{record.kind} {record.status}", 0) + 1
        plan = store.get_result(iid, "plan", "generation")
        selection = store.selection(iid)
        context = store.get_result(iid, "context", "result")
        rows.append({
            "instance_id": iid,
            "stage": state["stage"],
            "status": state["status"],
            "plan": "-" if plan is None else f"{plan['trajectories']}x{plan['max_iterations']}" + (" (cut)" if plan.get("degraded") else ""),
            "trajectories": ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())) or "-",
            "candidates": len(store.candidates(iid)),
            "selection": "-" if selection is None else f"{selection['method']}",
            "failure": "" if state["status"] != "failed" else f"{state['failure_kind']}: {(state['failure'] or '')[:120]}",
            "context": None if context is None else {
                "files": len(context.get("included", [])),
                "packed_tokens": context.get("packed_tokens", 0),
                "budget_tokens": context.get("budget_tokens", 0),
                "fallback": context.get("ranking_fallback", ""),
            },
        })
    return rows


_STAGES_UP_TO = {
    "generation": ("relevance", "ranking", "testing", "editing"),
    "selection": ("relevance", "ranking", "testing", "editing", "selection"),
}


def _run(
    cfg: Config, instances: list[Instance], run_dir: Path, *, retry_infra: bool, allow_oracle: bool,
    stop_after: str = "selection",
) -> None:
    from ..llm.preflight import preflight
    from ..pipeline.build import open_services
    from ..pipeline.run import choose_instances, run_instances
    from .live import LiveView

    console = Console(stderr=True)
    # Before any repository, image or paid call: a stopped or misnamed server is one line now.
    preflight(cfg, os.environ, stages=_STAGES_UP_TO[stop_after])
    with RunStore.open(run_dir) as probe:
        chosen = choose_instances(probe, instances, retry_infra=retry_infra)
    if chosen.failed:
        console.print(
            f"{len(chosen.failed)} instance(s) failed before and are left alone"
            + ("" if retry_infra else " (--retry-infra redoes infrastructure failures)")
        )
    if chosen.done:
        console.print(f"{len(chosen.done)} instance(s) already done")
    view: LiveView | None = None

    def events(event):  # type: ignore[no-untyped-def]
        if view is not None:
            view.event(event)

    if cfg.executor == "ray":
        from ..pipeline.ray_executor import run_instances_ray

        # The driver's RunState actor writes the store; this process only reads it (live view, export).
        with RunStore.open(run_dir) as store:
            with LiveView(store, cfg, console) as view:
                statuses = run_instances_ray(cfg, run_dir, chosen.run, os.environ, events=events, stop_after=stop_after)
            _finish(store, cfg, run_dir, statuses, stop_after=stop_after, allow_oracle=allow_oracle, console=console,
                    failed_before=len(chosen.failed))
        return
    with open_services(cfg, run_dir, instances, os.environ, events=events) as services:
        with LiveView(services.store, cfg, console) as view:
            statuses = asyncio.run(run_instances(services, chosen.run, stop_after=stop_after))
        _finish(services.store, cfg, run_dir, statuses, stop_after=stop_after, allow_oracle=allow_oracle, console=console,
                failed_before=len(chosen.failed))


def _finish(
    store: RunStore, cfg: Config, run_dir: Path, statuses: dict[str, str], *, stop_after: str, allow_oracle: bool,
    console: Console, failed_before: int = 0,
) -> None:
    """Export the predictions and say how the run went; exit 1 when an instance is not done.

    Instances that failed in an earlier invocation and were left alone count too: a rerun of
    a run with a failed instance exits 1, as the first invocation did.
    """
    from ..export import export_predictions, oracle_stages

    if stop_after != "selection":
        done = sum(1 for status in statuses.values() if status == "done")
        console.print(f"{done} of {len(statuses)} instance(s) have candidates; `codemonkeys select {run_dir}` votes and selects")
        if done < len(statuses) or failed_before:
            raise typer.Exit(1)
        return
    oracle_run = bool(oracle_stages(store))
    output = Path(run_dir) / "all_preds.jsonl"
    name = f"codemonkeys+{cfg.models.editing.model}"
    try:
        written = export_predictions(store, output, model_name=name, allow_oracle=allow_oracle)
    except UserError as exc:
        console.print(f"[yellow]not exported:[/] {exc}", highlight=False)
    else:
        label = " (ORACLE: made with the gold patch, not a real result)" if oracle_run else ""
        console.print(f"wrote {len(written)} prediction(s) to {output}{label}", highlight=False)
    done = sum(1 for status in statuses.values() if status == "done")
    console.print(f"{done} of {len(statuses)} instance(s) done this time; `codemonkeys status {run_dir}` shows all")
    if failed_before or any(status != "done" for status in statuses.values()):
        raise typer.Exit(1)
