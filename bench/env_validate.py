"""Validate gold patches of a spread-out sample of real instances, and print a table.

    python bench/env_validate.py --dataset ../shared/data/swebench/verified_dev.jsonl \
        --mirror-dir /work/mirrors --output /tmp/env_validate.json

The sample takes, for each repository in ``--quota``, that many instances
spread over its versions (the versions in order, one instance per version
picked round-robin, first instance id within a version). Instances whose base
commit has files the mirror lacks cannot be built from it; they are listed and
left out. psf/requests is not in the default quota: its tests call httpbin.org
(grade it with ``--instance-ids`` to see them reported as needing the network). Images are built one
at a time (machines here have 2 cores). The report is resumable: rerun the
same command after an interruption. Columns: instance, repo, version, build s
(image build or cache lookup), test s (eval script), status, cause.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from codemonkeys.config import load_config
from codemonkeys.env.images import ImageBuilder
from codemonkeys.env.validate import cpu_factories, grade_instances
from codemonkeys.sandbox.factory import make_sandbox_factory
from codemonkeys.swebench.instances import Instance, load_instances
from codemonkeys.swebench.repo import RepoSource, lacking_files

DEFAULT_QUOTA = (
    "django/django=6,sympy/sympy=3,pytest-dev/pytest=2,sphinx-doc/sphinx=2,astropy/astropy=1,"
    "scikit-learn/scikit-learn=1,matplotlib/matplotlib=1,pydata/xarray=1,pylint-dev/pylint=1,"
    "pallets/flask=1,mwaskom/seaborn=1"
)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))


def sample(instances: list[Instance], quota: dict[str, int]) -> list[Instance]:
    """Per repo, ``quota`` instances spread over its versions (deterministic)."""
    chosen: list[Instance] = []
    for repo, count in quota.items():
        by_version: dict[str, list[Instance]] = defaultdict(list)
        for instance in sorted((i for i in instances if i.repo == repo), key=lambda i: i.instance_id):
            by_version[instance.version].append(instance)
        versions = sorted(by_version, key=_version_key)
        # Evenly spaced versions first, then more instances of the same versions.
        if count < len(versions):
            step = (len(versions) - 1) / max(count - 1, 1)
            versions = [versions[round(k * step)] for k in range(count)] if count > 1 else [versions[-1]]
        picked: list[Instance] = []
        depth = 0
        while len(picked) < count and any(len(by_version[v]) > depth for v in versions):
            for version in versions:
                if len(picked) < count and len(by_version[version]) > depth:
                    picked.append(by_version[version][depth])
            depth += 1
        chosen += picked
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--mirror-dir", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--quota", default=DEFAULT_QUOTA, help="repo=count,...")
    parser.add_argument("--instance-ids", default="", help="grade these instead of a sample")
    parser.add_argument("--config", default=None)
    parser.add_argument("--force", action="store_true", help="regrade instances already in the report")
    parser.add_argument("--list", action="store_true", help="only print the sample")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    console = Console()

    config = load_config(args.config, [f"environment.mirror_dir={args.mirror_dir}"])
    if args.instance_ids:
        instances = load_instances(args.dataset, instance_ids=[i for i in args.instance_ids.split(",") if i])
    else:
        quota = {repo: int(n) for repo, _, n in (item.partition("=") for item in args.quota.split(",") if item)}
        candidates = [i for i in load_instances(args.dataset) if i.repo in quota]
        source = RepoSource(mirror_dir=args.mirror_dir)
        unbuildable = {i.instance_id: lacking_files(source.git_dir(i.repo), i.base_commit) for i in candidates}
        for instance_id, files in unbuildable.items():
            if files:
                console.print(f"not sampled: {instance_id}: the mirror lacks {', '.join(files[:3])} of its base commit")
        instances = sample([i for i in candidates if not unbuildable[i.instance_id]], quota)
    if args.list:
        for instance in instances:
            print(instance.instance_id, instance.version)
        return 0

    builder = ImageBuilder(config.environment, progress=lambda message: console.print(f"[dim]{message}[/]"))
    factory = make_sandbox_factory(config.sandbox)

    def on_result(instance_id: str, entry: dict) -> None:
        console.print(f"{instance_id}: [bold]{entry['status']}[/] {entry.get('cause') or ''}")

    report = asyncio.run(
        grade_instances(
            instances, {i.instance_id: i.patch for i in instances}, images=builder, factory=factory,
            registry=builder.registry, timeout_s=config.environment.test_timeout_s, output=args.output,
            force=args.force, on_result=on_result, factory_for_cpus=cpu_factories(config.sandbox),
        )
    )
    table = Table(title=f"env validate: gold patches of {len(instances)} instances")
    for column in ("instance", "repo", "version", "build s", "test s", "status", "cause"):
        table.add_column(column, overflow="fold")
    counts: dict[str, int] = defaultdict(int)
    for instance in instances:
        entry = report.get(instance.instance_id, {})
        counts[entry.get("status", "missing")] += 1
        table.add_row(
            instance.instance_id, instance.repo, instance.version,
            f"{entry['build_s']:.0f}" if entry.get("build_s") is not None else "-",
            f"{entry['test_s']:.1f}" if entry.get("test_s") is not None else "-",
            entry.get("status", "missing"), (entry.get("cause") or "")[:160],
        )
    Console(width=200).print(table)
    total = len(instances)
    print(", ".join(f"{status}: {n}" for status, n in sorted(counts.items())) + f"  ({counts['resolved'] / total:.0%} resolved)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
