"""``codemonkeys env build|validate`` and ``codemonkeys evaluate``: environments and grading."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ..config import Config
from ..examples import resolve_dataset
from .common import load_cli_config

DATASET_HELP = "Hub dataset (princeton-nlp/SWE-bench_Verified, or verified/lite), a local .jsonl/.json/.parquet file, or 'example'."


def _instances(dataset: str, split: str, instance_ids: str | None) -> list[Any]:
    from ..swebench.instances import load_instances, split_ids

    return load_instances(dataset, split=split, instance_ids=split_ids(instance_ids) or None)


def _summary_table(title: str, report: dict[str, dict[str, Any]], ids: list[str]) -> Table:
    table = Table(title=title)
    for column in ("instance", "status", "build s", "test s", "cause"):
        table.add_column(column, overflow="fold")
    for instance_id in ids:
        entry = report.get(instance_id)
        if entry is None:
            continue
        table.add_row(
            instance_id,
            entry["status"],
            "-" if entry.get("build_s") is None else f"{entry['build_s']:.0f}",
            "-" if entry.get("test_s") is None else f"{entry['test_s']:.1f}",
            (entry.get("cause") or "")[:200],
        )
    return table


def _grade(
    config: Config, instances: list[Any], patches: dict[str, str | None], output: Path | None, force: bool, console: Console
) -> dict[str, dict[str, Any]]:
    from ..env.validate import cpu_factories, grade_instances
    from ..pipeline.build import repo_source
    from ..pipeline.environments import ThreadedEnvironments, environments_for
    from ..sandbox.factory import make_sandbox_factory

    # The run's environment provider: images for Docker, local environments for bubblewrap.
    factory = make_sandbox_factory(config.sandbox, network=config.grading.network)
    provider = environments_for(
        factory, config, progress=lambda message: console.print(f"[dim]{message}[/]"), source=repo_source(config)
    )
    assert isinstance(provider, ThreadedEnvironments)
    builder: Any = provider.builder

    def on_result(instance_id: str, entry: dict[str, Any]) -> None:
        console.print(f"{instance_id}: [bold]{entry['status']}[/] {entry.get('cause') or ''}", highlight=False)

    return asyncio.run(
        grade_instances(
            instances, patches, images=builder, factory=factory, registry=builder.registry,
            timeout_s=config.environment.test_timeout_s, output=output, force=force, on_result=on_result,
            factory_for_cpus=cpu_factories(config.sandbox, network=config.grading.network),
            reinstall=config.environment.grading_reinstall, network=config.grading.network,
        )
    )


def _print_totals(console: Console, report: dict[str, dict[str, Any]], ids: list[str]) -> None:
    counts = Counter(report[i]["status"] for i in ids if i in report)
    console.print(", ".join(f"{status}: {counts.get(status, 0)}" for status in ("resolved", "unresolved", "error")))
    dropped = {i: report[i].get("setup_hunks_dropped") or [] for i in ids if i in report}
    if any(dropped.values()):
        patches = sum(1 for hunks in dropped.values() if hunks)
        console.print(
            f"setup hunks dropped: {sum(len(h) for h in dropped.values())} in {patches} patches "
            "(changes the image's setup commit already made; see setup_hunks_dropped in the report)"
        )


def _images() -> list[Any]:
    """Every image with its sizes and container count (``docker system df``)."""
    import docker

    from ..env.inventory import images_from

    try:
        return images_from(docker.from_env(timeout=600))
    except docker.errors.DockerException as exc:
        from ..errors import SandboxError

        raise SandboxError(f"no Docker daemon answers: {exc}") from exc


def register(app: typer.Typer) -> None:
    env_app = typer.Typer(help="SWE-bench environment images: build, validate, du, prune.", no_args_is_help=True)
    app.add_typer(env_app, name="env")

    @env_app.command("build")
    def build(
        dataset: str = typer.Option(..., "--dataset", help=DATASET_HELP),
        instance_ids: str = typer.Option(None, "--instance-ids", help="Comma-separated ids (default: all)."),
        split: str = typer.Option("test", help="Dataset split (hub datasets)."),
        jobs: int = typer.Option(1, "--jobs", min=1, help="Repo versions built at once (shared layers are built first, once)."),
        mirror_dir: Path = typer.Option(None, "--mirror-dir", help="DIR/<owner>__<repo> git mirrors instead of GitHub."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
        config: str = typer.Option(None, "--config", help="Config file or shipped config name."),
        overrides: list[str] = typer.Option(None, "--set", help="key.path=value config override."),
    ) -> None:
        """Pull or build the image of each instance, with a progress bar. Exit 1 when some failed."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from ..env.batch import build_many

        console = Console(stderr=as_json)
        dataset, extra = resolve_dataset(dataset)
        cfg = load_cli_config(config, [*extra, *(overrides or [])], mirror_dir)
        instances = _instances(dataset, split, instance_ids)
        results: dict[str, dict[str, Any]] = {}
        started = time.monotonic()
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=as_json) as bar:
            task = bar.add_task("images", total=len(instances))

            def done(instance: Any, outcome: Any) -> None:
                if isinstance(outcome, BaseException):
                    results[instance.instance_id] = {"status": "failed", "error": str(outcome)[:2000]}
                    bar.console.print(f"[red]{instance.instance_id} failed[/]: {str(outcome)[:300]}", highlight=False)
                else:
                    results[instance.instance_id] = {
                        "status": outcome.source, "image": outcome.ref.image, "seconds": round(outcome.build_s, 1),
                    }
                bar.advance(task)

            build_many(cfg.environment, instances, jobs=jobs, on_done=done,
                       progress=lambda message: bar.console.print(f"[dim]{message}[/]", highlight=False))
        failed = sum(1 for r in results.values() if r["status"] == "failed")
        if as_json:
            print(json.dumps({"instances": results, "seconds": round(time.monotonic() - started, 1)}, indent=2))
        else:
            counts = Counter(r["status"] for r in results.values())
            console.print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + f" in {time.monotonic() - started:.0f} s")
        if failed:
            raise typer.Exit(1)

    @env_app.command("du")
    def du(
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
        config: str = typer.Option(None, "--config", help="Config file or shipped config name."),
        overrides: list[str] = typer.Option(None, "--set", help="key.path=value config override."),
    ) -> None:
        """Disk used by environment images, per layer kind (base, python, env, instance, ...)."""
        from ..env.inventory import disk_usage, human

        cfg = load_cli_config(config, overrides or [], None)
        usage = disk_usage(_images(), cfg.environment.image_prefix)
        if as_json:
            print(json.dumps({k: vars(v) for k, v in usage.items()}, indent=2))
            return
        table = Table(title="environment images")
        for column in ("kind", "images", "own layers", "full sizes"):
            table.add_column(column, justify="left" if column == "kind" else "right")
        for kind, item in usage.items():
            table.add_row(kind, str(item.images), human(item.layer_bytes), human(item.total_bytes))
        table.add_row("all", str(sum(u.images for u in usage.values())), human(sum(u.layer_bytes for u in usage.values())), "")
        Console().print(table)
        Console().print("own layers: the disk of the layers each kind adds on top of the one below (each layer once).")

    @env_app.command("prune")
    def prune(
        instances: bool = typer.Option(False, "--instances", help="Also remove every instance image (env layers stay)."),
        standins: bool = typer.Option(False, "--standins", help="Also remove official-layout stand-ins."),
        yes: bool = typer.Option(False, "--yes", help="Remove; without it, only show what would go."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
        config: str = typer.Option(None, "--config", help="Config file or shipped config name."),
        overrides: list[str] = typer.Option(None, "--set", help="key.path=value config override."),
    ) -> None:
        """Remove environment images no run needs: superseded instance and env images (see env/inventory.py)."""
        from ..env.inventory import human, prune_plan

        cfg = load_cli_config(config, overrides or [], None)
        plan = prune_plan(_images(), cfg.environment.image_prefix, instances=instances, standins=standins)
        removed: list[str] = []
        if yes:
            import docker

            client = docker.from_env()
            for item in plan.remove:
                for tag in item.image.tags:
                    try:
                        client.images.remove(tag, noprune=False)
                    except docker.errors.APIError as exc:  # in use since the plan was made, or gone
                        Console(stderr=True).print(f"kept {tag}: {exc.explanation or exc}", highlight=False)
                        continue
                    removed.append(tag)
        rows: list[dict[str, Any]] = [
            {"tag": ", ".join(i.image.tags), "kind": i.kind, "bytes": i.image.unique_size, "reason": i.reason} for i in plan.remove
        ]
        if as_json:
            print(json.dumps({"remove": rows, "removed": removed, "kept": plan.keep, "freed_bytes": plan.freed_bytes}, indent=2))
            return
        table = Table(title="env prune" + ("" if yes else " (dry run: --yes removes)"))
        for column in ("image", "kind", "frees", "why"):
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(row["tag"], row["kind"], human(row["bytes"]), row["reason"])
        Console().print(table)
        Console().print(f"{len(rows)} to remove ({human(plan.freed_bytes)}), {plan.keep} kept" + (f"; removed {len(removed)} tags" if yes else ""))

    @env_app.command("validate")
    def validate(
        dataset: str = typer.Option(..., "--dataset", help=DATASET_HELP),
        instance_ids: str = typer.Option(None, "--instance-ids", help="Comma-separated ids (default: all)."),
        output: Path = typer.Option(Path("report.json"), "--output", help="Report: instance id -> status and tests."),
        split: str = typer.Option("test", help="Dataset split (hub datasets)."),
        mirror_dir: Path = typer.Option(None, "--mirror-dir", help="DIR/<owner>__<repo> git mirrors instead of GitHub."),
        force: bool = typer.Option(False, help="Regrade instances the report already has."),
        config: str = typer.Option(None, "--config", help="Config file or shipped config name."),
        overrides: list[str] = typer.Option(None, "--set", help="key.path=value config override."),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of tables."),
    ) -> None:
        """Apply each instance's gold patch and grade it. Exit 0 even when some are unresolved."""
        console = Console(stderr=as_json)
        dataset, extra = resolve_dataset(dataset)
        cfg = load_cli_config(config, [*extra, *(overrides or [])], mirror_dir)
        instances = _instances(dataset, split, instance_ids)
        report = _grade(cfg, instances, {i.instance_id: i.patch for i in instances}, output.resolve(), force, console)
        ids = [i.instance_id for i in instances]
        if as_json:
            typer.echo(json.dumps({i: report[i] for i in ids if i in report}, indent=2, sort_keys=True))
            return
        console.print(_summary_table("gold patches", report, ids))
        _print_totals(console, report, ids)
        console.print(f"report: {output}")

    @app.command("evaluate")
    def evaluate(
        predictions: Path = typer.Argument(..., help="SWE-bench predictions (JSONL: instance_id, model_patch)."),
        dataset: str = typer.Option(..., "--dataset", help=DATASET_HELP),
        output: Path = typer.Option(None, "--output", help="Report path (default: PREDICTIONS.report.json)."),
        split: str = typer.Option("test", help="Dataset split (hub datasets)."),
        mirror_dir: Path = typer.Option(None, "--mirror-dir", help="DIR/<owner>__<repo> git mirrors instead of GitHub."),
        official: bool = typer.Option(False, "--official", help="Hand the file to swebench's own harness instead."),
        run_id: str = typer.Option("codemonkeys", help="Run id for --official."),
        max_workers: int = typer.Option(2, help="Parallel workers for --official."),
        force: bool = typer.Option(False, help="Regrade instances the report already has."),
        config: str = typer.Option(None, "--config", help="Config file or shipped config name."),
        overrides: list[str] = typer.Option(None, "--set", help="key.path=value config override."),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of tables."),
    ) -> None:
        """Grade a predictions file locally, like the official harness (or with it: --official).

        Exit 1 when an instance could not be graded (status error); unresolved is a result.
        """
        from ..errors import DataError
        from ..swebench.instances import load_instances, load_predictions

        console = Console(stderr=as_json)
        if official:
            command = [
                sys.executable, "-m", "swebench.harness.run_evaluation", "--dataset_name", dataset,
                "--split", split, "--predictions_path", str(predictions), "--run_id", run_id,
                "--max_workers", str(max_workers),
            ]
            console.print("$ " + " ".join(command), highlight=False)
            raise typer.Exit(subprocess.call(command))
        patches = load_predictions(predictions)
        if not patches:
            raise DataError(f"{predictions} has no predictions")
        dataset, extra = resolve_dataset(dataset)
        cfg = load_cli_config(config, [*extra, *(overrides or [])], mirror_dir)
        instances = load_instances(dataset, split=split, instance_ids=list(patches))
        target = (output or predictions.with_name(predictions.stem + ".report.json")).resolve()
        report = _grade(cfg, instances, patches, target, force, console)
        ids = [i.instance_id for i in instances]
        errors = any(report.get(i, {}).get("status") == "error" for i in ids)
        if as_json:
            typer.echo(json.dumps({i: report[i] for i in ids if i in report}, indent=2, sort_keys=True))
            if errors:
                raise typer.Exit(1)
            return
        console.print(_summary_table(f"predictions of {predictions.name}", report, ids))
        _print_totals(console, report, ids)
        summary = {status: sorted(i for i in ids if report.get(i, {}).get("status") == status) for status in ("resolved", "unresolved", "error")}
        console.print(f"report: {target}")
        console.print_json(json.dumps({k: len(v) for k, v in summary.items()}))
        if errors:
            raise typer.Exit(1)
