"""Grade real leaderboard patches in local environments and compare with the official verdicts.

    python bench/grading_fidelity.py --dataset ../shared/data/swebench/verified_dev.jsonl \
        --submissions ../shared/data/submissions/verified --mirror-dir DIR --output /tmp/fidelity.json \
        [--limit 40] [--instance-ids a,b] [--json]

``DIR/<owner>__<repo>`` are bare git mirrors (e.g. links to the search tool's
``fetch github:swe-bench/<owner>__<repo>`` copies). Instances are taken round-robin over
repositories, each repository's largest environment (repo version) first, so
every repo is covered early and builds are shared. For each instance: the
gold patch (is the environment faithful?), then every submission's non-empty
patch, graded as ``evaluate`` does (setup hunks dropped and counted); each
verdict is compared with the submission's official ``results.json``. A
disagreement is graded once more: a verdict that changes is reported as
flaky. Every disagreement gets a cause: environment not faithful (the gold
patch fails: its cause), tests needing the network, patch does not apply,
infra error, flaky, or "verdict differs" with the test counts. The report is
resumable: rerun the same command after an interruption. Images are built
one at a time (2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from codemonkeys.config import EnvironmentConfig, SandboxConfig
from codemonkeys.env.images import BuiltImage, ImageBuilder
from codemonkeys.env.validate import TIMED_OUT, cpu_factories, grade_patch, load_report, write_report
from codemonkeys.sandbox.factory import make_sandbox_factory
from codemonkeys.swebench.instances import Instance, load_instances


def order(instances: list[Instance]) -> list[Instance]:
    """Round-robin over repos; within a repo, the largest repo version first (shared builds)."""
    by_repo: dict[str, list[Instance]] = defaultdict(list)
    for instance in instances:
        by_repo[instance.repo].append(instance)
    queues: list[list[Instance]] = []
    for repo in sorted(by_repo, key=lambda r: (-len(by_repo[r]), r)):
        sizes: dict[str, int] = defaultdict(int)
        for instance in by_repo[repo]:
            sizes[instance.version] += 1
        queues.append(sorted(by_repo[repo], key=lambda i: (-sizes[i.version], i.version, i.instance_id)))
    ordered: list[Instance] = []
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop(0))
    return ordered


def load_submissions(folder: Path) -> dict[str, tuple[dict[str, str], set[str]]]:
    """submission -> (instance id -> patch, officially resolved ids)."""
    found: dict[str, tuple[dict[str, str], set[str]]] = {}
    for sub in sorted(p for p in folder.iterdir() if (p / "all_preds.jsonl").is_file()):
        patches = {}
        for line in (sub / "all_preds.jsonl").read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                patches[row["instance_id"]] = row.get("model_patch") or ""
        resolved = set(json.loads((sub / "results.json").read_text()).get("resolved", []))
        found[sub.name] = (patches, resolved)
    return found


NETWORK = "network: tests want the internet"


def cause_of(entry: dict[str, Any], gold: dict[str, Any] | None, official: bool) -> str:
    """Why a local verdict differs from the official one."""
    if entry.get("flaky"):
        return "flaky (a regrade changed the verdict)"
    if entry["status"] == "error":
        return f"infra: {(entry.get('cause') or '')[:120]}"
    if entry.get("needs_network") or (gold is not None and gold.get("status") != "resolved" and gold.get("needs_network")):
        return NETWORK + (" (the gold patch fails here too)" if gold is not None and gold.get("status") != "resolved" else "")
    if gold is not None and gold.get("status") != "resolved" and official:
        return f"environment not faithful (gold: {(gold.get('cause') or '')[:100]})"
    if not entry.get("patch_applied", True):
        return f"patch does not apply ({len(entry.get('setup_hunks_dropped') or [])} setup hunks dropped)"
    return f"verdict differs: {(entry.get('cause') or 'resolved here')[:120]}"


async def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    instances = order(load_instances(str(args.dataset)))
    if args.instance_ids:
        wanted = set(args.instance_ids.split(","))
        instances = [i for i in instances if i.instance_id in wanted]
    if args.repos:
        instances = [i for i in instances if i.repo in set(args.repos.split(","))]
    instances = instances[: args.limit]
    submissions = load_submissions(args.submissions)
    config = EnvironmentConfig(mirror_dir=args.mirror_dir, cache_dir=args.cache_dir, pull_official=False)
    builder = ImageBuilder(config, progress=lambda m: console.print(f"[dim]{m}[/]", highlight=False))
    sandbox_config = SandboxConfig(backend="docker", memory="4g")
    default_factory = make_sandbox_factory(sandbox_config)
    factory_for = cpu_factories(sandbox_config)
    report = load_report(args.output)
    for number, instance in enumerate(instances, 1):
        iid = instance.instance_id
        row = report.setdefault(iid, {"repo": instance.repo, "version": instance.version, "grades": {}})
        if row.get("done"):
            continue
        console.print(f"[{number}/{len(instances)}] {iid}", highlight=False)
        started = time.monotonic()
        try:
            plan = await asyncio.to_thread(builder.plan, instance)
            row["build_kind"] = "warm" if builder.exists(plan.tag) else "extra" if builder.exists(plan.env.tag) else "cold"
            built: BuiltImage = await asyncio.to_thread(builder.ensure_instance, instance)
        except Exception as exc:  # noqa: BLE001 - the instance boundary: recorded
            row.update(build_error=str(exc)[:500], build_s=round(time.monotonic() - started, 1), done=True)
            write_report(args.output, report)
            continue
        row.update(build_s=round(time.monotonic() - started, 1), source=built.source, env=built.env_tag)
        spec = builder.registry.get(instance.repo, instance.version)
        # As the harness gives its container the CPUs a spec asks for (pylint skips tests with fewer).
        factory = factory_for(spec.nano_cpus / 1e9) if spec.nano_cpus else default_factory
        candidates = {"gold": (instance.patch, None)}
        for name, (patches, resolved) in submissions.items():
            if patches.get(iid, "").strip():
                candidates[name] = (patches[iid], iid in resolved)
        for name, (patch, official) in candidates.items():
            if name in row["grades"]:
                continue
            entry = await _grade(factory, built, instance, spec, patch, args.timeout)
            if official is not None and (entry["status"] == "resolved") != official and entry["status"] != "error":
                again = await _grade(factory, built, instance, spec, patch, args.timeout)
                entry["flaky"] = again["status"] != entry["status"]
            entry["official"] = official
            row["grades"][name] = entry
            write_report(args.output, report)
            console.print(f"  {name}: {entry['status']} (official: {official})", highlight=False)
        row["done"] = True
        write_report(args.output, report)
    return report


async def _grade(factory: Any, built: BuiltImage, instance: Instance, spec: Any, patch: str, timeout: float) -> dict[str, Any]:
    try:
        graded = await grade_patch(factory, built.ref, instance, spec, patch, timeout_s=timeout)
    except Exception as exc:  # noqa: BLE001 - one patch's failure is recorded
        return {"status": "error", "cause": f"{type(exc).__name__}: {exc}"[:500], "patch_applied": False}
    return graded.as_dict()


def current(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry as grade_patch grades now: reports written before it graded a timeout unresolved said "error"."""
    if entry["status"] == "error" and str(entry.get("cause") or "").startswith(TIMED_OUT):
        return {**entry, "status": "unresolved"}
    return entry


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    repos: dict[str, dict[str, Any]] = {}
    for iid, row in sorted(report.items()):
        repo = repos.setdefault(row["repo"], {
            "instances": 0, "graded": 0, "agree": 0, "network": 0, "disagreements": [], "gold_resolved": 0, "setup_hunks": 0,
        })
        grades = row.get("grades", {})
        if not grades and not row.get("build_error"):
            continue
        repo["instances"] += 1
        gold = grades.get("gold")
        repo["gold_resolved"] += int(bool(gold and gold["status"] == "resolved"))
        if row.get("build_error"):
            repo["disagreements"].append({"instance": iid, "submission": "*", "cause": f"build failed: {row['build_error'][:120]}"})
        for name, entry in grades.items():
            if name == "gold":
                continue
            entry = current(entry)
            repo["graded"] += 1
            repo["setup_hunks"] += len(entry.get("setup_hunks_dropped") or [])
            official = bool(entry["official"])
            if entry["status"] != "error" and (entry["status"] == "resolved") == official:
                repo["agree"] += 1
            else:
                cause = cause_of(entry, gold, official)
                repo["network"] += int(cause.startswith(NETWORK))
                repo["disagreements"].append({
                    "instance": iid, "submission": name, "local": entry["status"], "official": "resolved" if official else "unresolved",
                    "cause": cause,
                })
    total = {k: sum(r[k] for r in repos.values()) for k in ("instances", "graded", "agree", "network", "gold_resolved", "setup_hunks")}
    return {"repos": repos, "total": total}


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}" if whole else "-"


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dataset", type=Path, default=here.parent / "shared" / "data" / "swebench" / "verified_dev.jsonl")
    parser.add_argument("--submissions", type=Path, default=here.parent / "shared" / "data" / "submissions" / "verified")
    parser.add_argument("--mirror-dir", type=Path, required=True)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=Path("grading_fidelity.json"))
    parser.add_argument("--also", type=Path, action="append", default=[],
                        help="More reports (parallel runs, reruns) merged into the summary; later ones win.")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--instance-ids", default=None)
    parser.add_argument("--repos", default=None)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--summary-only", action="store_true", help="Print the table of an existing report.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    console = Console(stderr=args.json, width=80)
    report = load_report(args.output) if args.summary_only else asyncio.run(run(args, console))
    for more in args.also:  # in order: a later report's row of an instance replaces an earlier one's
        report = {**report, **load_report(more)}
    summary = summarize(report)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    table = Table(title="grading fidelity: local verdicts vs official results.json")
    for column in ("repo", "inst", "gold", "graded", "agree", "%", "net", "%off", "setup"):
        table.add_column(column, justify="left" if column == "repo" else "right", no_wrap=True)
    for name, repo in [*sorted(summary["repos"].items()), ("all", summary["total"])]:
        table.add_row(name.split("/")[-1], str(repo["instances"]), str(repo["gold_resolved"]), str(repo["graded"]), str(repo["agree"]),
                      _pct(repo["agree"], repo["graded"]), str(repo["network"]),
                      _pct(repo["agree"], repo["graded"] - repo["network"]), str(repo["setup_hunks"]))
    console.print(table)
    console.print("inst: instances; gold: gold patch resolved here; net: disagreements whose tests want the "
                  "internet, which these sandboxes lack (%off leaves them out; grading.network=true on a machine with "
                  "internet lets them run); setup: setup hunks dropped.",
                  highlight=False)
    for name, repo in sorted(summary["repos"].items()):
        for d in repo["disagreements"]:
            console.print(f"  {d['instance']} {d['submission']}: local {d.get('local', '-')}, official {d.get('official', '-')}: {d['cause']}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
