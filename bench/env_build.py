"""Build time and disk of environment images: cold, warm, per extra instance; projected to 113 and 500.

    python bench/env_build.py --mirror-dir DIR --instance-ids a,b,c [--from-fidelity R.json ...] [--json]
    python bench/env_build.py --from-fidelity /tmp/fidelity.json [MORE.json ...] [--json]

Measure mode builds each instance (images built one at a time, 2 cores) and
times it as *cold* (its repo version's env layer was missing), *extra* (the env
layer was there, the instance layer was not) or *warm* (the image existed:
the lookup), then asks again for a warm time. ``--from-fidelity`` reads the
build times ``bench/grading_fidelity.py`` recorded instead (the first
instance of a repo version there was cold, the others extra). Disk comes from
the images on this machine: the layers each env image adds on top of its
Python layer, and each instance image on top of its env. The projection for
the 113 dev instances and the 500 of Verified: per repo, one cold build per
repo version and an extra build per further instance, at the repo's measured
means (the overall means where a repo has none); Verified's repo versions are
bounded by swebench's spec table (versions of the repo), its instance counts
by repo come from the submissions' prediction files.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from codemonkeys.config import EnvironmentConfig
from codemonkeys.env.images import ImageBuilder
from codemonkeys.env.inventory import ImageInfo, human, images_from, own_bytes
from codemonkeys.swebench.instances import load_instances

HERE = Path(__file__).resolve().parents[1]


def _images() -> list[ImageInfo]:
    import docker

    return images_from(docker.from_env(timeout=600))


def measure(args: argparse.Namespace, console: Console) -> list[dict[str, Any]]:
    instances = load_instances(str(args.dataset), instance_ids=args.instance_ids.split(","))
    builder = ImageBuilder(EnvironmentConfig(mirror_dir=args.mirror_dir, cache_dir=args.cache_dir, pull_official=False),
                           progress=lambda m: console.print(f"[dim]{m}[/]", highlight=False))
    rows = []
    for instance in instances:
        plan = builder.plan(instance)
        kind = "warm" if builder.exists(plan.tag) else "extra" if builder.exists(plan.env.tag) else "cold"
        started = time.monotonic()
        built = builder.ensure_instance(instance)
        first = time.monotonic() - started
        started = time.monotonic()
        builder.ensure_instance(instance)
        warm = time.monotonic() - started
        rows.append({"instance": instance.instance_id, "repo": instance.repo, "version": instance.version, "kind": kind,
                     "seconds": round(first, 1), "warm_s": round(warm, 2), "image": built.ref.image, "env": built.env_tag})
        console.print(f"{instance.instance_id}: {kind} {first:.1f} s, then warm {warm:.2f} s", highlight=False)
    return rows


def from_fidelity(paths: list[Path]) -> list[dict[str, Any]]:
    """Build rows from fidelity reports; without a recorded kind, an env's longest build was its cold one."""
    report: dict[str, Any] = {}
    for path in paths:
        report.update(json.loads(path.read_text()))
    rows = []
    for iid, row in report.items():
        if "build_s" not in row or row.get("build_error"):
            continue
        rows.append({"instance": iid, "repo": row["repo"], "version": row["version"], "kind": row.get("build_kind"),
                     "seconds": row["build_s"], "warm_s": None, "env": row.get("env"), "image": None})
    by_env: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_env[str(r["env"])].append(r)
    for members in by_env.values():
        if any(m["kind"] is None for m in members):
            longest = max(members, key=lambda m: m["seconds"])
            for m in members:
                m["kind"] = "cold" if m is longest else "extra"
    return rows


def disk(rows: list[dict[str, Any]]) -> tuple[dict[str, int], dict[str, int]]:
    """Own bytes of each env image and each instance image named in ``rows`` (by tag)."""
    images = _images()
    by_tag = {tag: image for image in images for tag in image.tags}
    envs = {r["env"]: own_bytes(by_tag[r["env"]], images) for r in rows if r.get("env") in by_tag}
    instances: dict[str, int] = {}
    for image in images:
        iid = image.labels.get("codemonkeys.instance_id")
        if iid and any(r["instance"] == iid for r in rows):
            instances[iid] = own_bytes(image, images)
    return envs, instances


def projection(rows: list[dict[str, Any]], env_disk: dict[str, int], inst_disk: dict[str, int], dataset: Path, submissions: Path) -> list[dict[str, Any]]:
    def mean(values: list[float], fallback: float) -> float:
        return statistics.mean(values) if values else fallback

    cold = [r["seconds"] for r in rows if r["kind"] == "cold"]
    extra = [r["seconds"] for r in rows if r["kind"] == "extra"]
    cold_all, extra_all = mean(cold, 0.0), mean(extra, 0.0)
    env_all = mean([float(v) for v in env_disk.values()], 0.0)
    inst_all = mean([float(v) for v in inst_disk.values()], 0.0)
    per_repo: dict[str, dict[str, float]] = {}
    for repo in {r["repo"] for r in rows}:
        mine = [r for r in rows if r["repo"] == repo]
        per_repo[repo] = {
            "cold": mean([r["seconds"] for r in mine if r["kind"] == "cold"], cold_all),
            "extra": mean([r["seconds"] for r in mine if r["kind"] == "extra"], extra_all),
            "env_bytes": mean([float(env_disk[r["env"]]) for r in mine if r.get("env") in env_disk], env_all),
            "inst_bytes": mean([float(inst_disk[r["instance"]]) for r in mine if r["instance"] in inst_disk], inst_all),
        }
    fallback = {"cold": cold_all, "extra": extra_all, "env_bytes": env_all, "inst_bytes": inst_all}
    dev = load_instances(str(dataset))
    dev_envs = Counter(i.repo for i in {(i.repo, i.version): i for i in dev}.values())
    dev_count = Counter(i.repo for i in dev)
    verified: Counter[str] = Counter()
    for sub in sorted(submissions.iterdir()):
        preds = sub / "all_preds.jsonl"
        if preds.is_file():
            ids = {json.loads(line)["instance_id"] for line in preds.read_text().splitlines() if line.strip()}
            if len(ids) >= sum(verified.values()):
                verified = Counter(_repo_of(i) for i in ids)
    from swebench.harness.constants import MAP_REPO_VERSION_TO_SPECS

    out = []
    for label, counts, envs in (
        ("dev (113)", dev_count, dev_envs),
        (f"Verified ({sum(verified.values())})", verified,
         Counter({repo: min(n, len(MAP_REPO_VERSION_TO_SPECS.get(repo, {})) or n) for repo, n in verified.items()})),
    ):
        seconds = sum(envs[r] * per_repo.get(r, fallback)["cold"] + (counts[r] - envs[r]) * per_repo.get(r, fallback)["extra"] for r in counts)
        size = sum(envs[r] * per_repo.get(r, fallback)["env_bytes"] + counts[r] * per_repo.get(r, fallback)["inst_bytes"] for r in counts)
        out.append({"set": label, "instances": sum(counts.values()), "envs": sum(envs.values()), "hours_1_build": round(seconds / 3600, 1), "bytes": int(size)})
    return out


def _repo_of(instance_id: str) -> str:
    owner, rest = instance_id.split("__", 1)
    return f"{owner}/{rest.rsplit('-', 1)[0]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dataset", type=Path, default=HERE.parent / "shared" / "data" / "swebench" / "verified_dev.jsonl")
    parser.add_argument("--submissions", type=Path, default=HERE.parent / "shared" / "data" / "submissions" / "verified")
    parser.add_argument("--mirror-dir", type=Path, default=None)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--instance-ids", default=None)
    parser.add_argument("--from-fidelity", type=Path, nargs="+", default=None,
                        help="Reports of bench/grading_fidelity.py (several: parallel runs).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    console = Console(stderr=args.json, width=80)
    if not args.from_fidelity and not args.instance_ids:
        parser.error("give --instance-ids to measure, --from-fidelity REPORT, or both")
    rows = from_fidelity(args.from_fidelity) if args.from_fidelity else []
    if args.instance_ids:  # with reports too: their images are found, which times the warm lookup
        rows += measure(args, console)
    env_disk, inst_disk = disk(rows)
    projected = projection(rows, env_disk, inst_disk, args.dataset, args.submissions)
    if args.json:
        print(json.dumps({"builds": rows, "env_bytes": env_disk, "instance_bytes": inst_disk, "projection": projected}, indent=2))
        return 0
    table = Table(title="environment builds (seconds on this machine)")
    for column in ("repo version", "cold", "extra", "warm", "env disk", "inst disk"):
        table.add_column(column, justify="left" if column == "repo version" else "right", no_wrap=True)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[f"{row['repo'].split('/')[-1]} {row['version']}"].append(row)
    for name, members in sorted(groups.items()):
        def cell(kind: str, members: list[dict[str, Any]] = members) -> str:
            values = [m["seconds"] for m in members if m["kind"] == kind]
            return f"{statistics.mean(values):.0f} ({len(values)})" if values else "-"
        warm = [m["warm_s"] for m in members if m.get("warm_s") is not None]
        env = [env_disk[m["env"]] for m in members if m.get("env") in env_disk]
        inst = [inst_disk[m["instance"]] for m in members if m["instance"] in inst_disk]
        table.add_row(name, cell("cold"), cell("extra"), f"{statistics.mean(warm):.2f}" if warm else "-",
                      human(env[0]) if env else "-", human(int(statistics.mean(inst))) if inst else "-")
    console.print(table)
    proj = Table(title="projection (one build at a time on this machine)")
    for column in ("set", "instances", "repo versions", "build hours", "disk"):
        proj.add_column(column, justify="left" if column == "set" else "right")
    for p in projected:
        proj.add_row(p["set"], str(p["instances"]), str(p["envs"]), f"{p['hours_1_build']:.1f}", human(p["bytes"]))
    console.print(proj)
    if not any(r["kind"] == "extra" for r in rows):
        console.print("no extra-instance build measured yet: build hours count cold builds only (a lower bound)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
