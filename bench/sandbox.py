"""Reusing one container per patch vs a new container per test run.

100 test runs (10 tests x 10 patches) go through the Docker sandbox twice:

* reused: one container per patch: apply the patch, run the 10 tests, reset;
* fresh:  a new container for every run: start, apply the patch, run one test, remove.

The two modes alternate patch by patch, sequentially (no concurrency), so
both see the same machine load.

Both modes must produce the same exit codes; the table shows both wall times
and their ratio. Without ``--image`` it runs on the fixture repository in the
small test image (built if missing). With ``--image IMAGE --instance ID`` it
runs on a SWE-bench instance image: tests from the instance's FAIL_TO_PASS and
PASS_TO_PASS, patches from the gold patch and the stored submissions.

    python bench/sandbox.py [--image IMAGE --instance ID] [--tests 10] [--patches 10]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from codemonkeys.config import SandboxConfig
from codemonkeys.sandbox import fixture_repo
from codemonkeys.sandbox.base import EnvironmentRef
from codemonkeys.sandbox.baseimage import ensure_test_image
from codemonkeys.sandbox.docker_backend import DockerSandboxFactory, connect

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass
class Workload:
    image: str
    tests: list[str]
    patches: list[str]
    argv_for: Callable[[str], list[str]]


def fixture_workload(client: object, n_tests: int, n_patches: int) -> Workload:
    image = fixture_repo.ensure_fixture_image(client, ensure_test_image(client))  # type: ignore[arg-type]
    names = list(fixture_repo.FUNCTIONS)
    # Patch i rewrites function i; odd ones break it, so test results differ by patch.
    patches = [
        fixture_repo.calc_patch(
            {
                names[
                    i % len(names)
                ]: f"({fixture_repo.FUNCTIONS[names[i % len(names)]]}){' + 1' if i % 2 else ''}"
            }
        )
        for i in range(n_patches)
    ]
    return Workload(
        image,
        fixture_repo.TEST_IDS[:n_tests],
        patches,
        lambda test: ["python3", "-m", "unittest", test],
    )


def instance_workload(image: str, instance_id: str, n_tests: int, n_patches: int) -> Workload:
    from swebench.harness.constants import MAP_REPO_VERSION_TO_SPECS

    rows = [json.loads(line) for line in (DATA / "swebench" / "verified_dev.jsonl").open()]
    row = next(r for r in rows if r["instance_id"] == instance_id)
    tests = (json.loads(row["FAIL_TO_PASS"]) + json.loads(row["PASS_TO_PASS"]))[:n_tests]
    patches = [row["patch"]]
    for preds in sorted((DATA / "submissions" / "verified").glob("*/all_preds.jsonl")):
        for line in preds.open():
            pred = json.loads(line)
            if (
                pred["instance_id"] == instance_id
                and pred.get("model_patch")
                and pred["model_patch"] not in patches
            ):
                patches.append(pred["model_patch"])
    test_cmd = MAP_REPO_VERSION_TO_SPECS[row["repo"]][row["version"]]["test_cmd"]
    test_cmd = test_cmd if isinstance(test_cmd, str) else " && ".join(test_cmd)
    script = f'[ -f /opt/miniconda3/bin/activate ] && . /opt/miniconda3/bin/activate testbed; {test_cmd} "$1"'
    patches = list(itertools.islice(itertools.cycle(patches), n_patches))
    return Workload(image, tests, patches, lambda test: ["bash", "-c", script, "bash", test])


async def run_reused(factory: DockerSandboxFactory, work: Workload, patch: str) -> list[int | None]:
    """One container for the patch: apply, run every test, reset."""
    codes: list[int | None] = []
    async with factory.sandbox(EnvironmentRef(key="bench", image=work.image)) as sb:
        await sb.apply_patch(patch)
        for test in work.tests:
            codes.append((await sb.exec(work.argv_for(test))).exit_code)
        await sb.reset()
    return codes


async def run_fresh(factory: DockerSandboxFactory, work: Workload, patch: str) -> list[int | None]:
    """A new container for every test run of the patch."""
    codes: list[int | None] = []
    for test in work.tests:
        async with factory.sandbox(EnvironmentRef(key="bench", image=work.image)) as sb:
            await sb.apply_patch(patch)
            codes.append((await sb.exec(work.argv_for(test))).exit_code)
    return codes


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--image", help="a SWE-bench instance image present locally")
    parser.add_argument("--instance", help="its instance id (needed with --image)")
    parser.add_argument("--tests", type=int, default=10)
    parser.add_argument("--patches", type=int, default=10)
    args = parser.parse_args(argv)
    client = connect()
    if args.image:
        if not args.instance:
            parser.error("--image needs --instance")
        work = instance_workload(args.image, args.instance, args.tests, args.patches)
    else:
        work = fixture_workload(client, args.tests, args.patches)
    factory = DockerSandboxFactory(SandboxConfig(command_timeout_s=600), client=client)
    runs = len(work.tests) * len(work.patches)
    reused: list[int | None] = []
    fresh: list[int | None] = []
    reused_s = fresh_s = 0.0
    load_before = os.getloadavg()[0]
    try:
        # The modes alternate patch by patch, so a change in machine load hits both alike.
        for patch in work.patches:
            started = time.monotonic()
            reused += await run_reused(factory, work, patch)
            reused_s += time.monotonic() - started
            started = time.monotonic()
            fresh += await run_fresh(factory, work, patch)
            fresh_s += time.monotonic() - started
    finally:
        factory.close()
    print(
        f"image {work.image}: {len(work.tests)} tests x {len(work.patches)} patches = {runs} runs"
    )
    print(
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after ({os.cpu_count()} cores)"
    )
    print(f"exit codes: {sorted(set(map(str, reused)))}; both modes agree: {reused == fresh}")
    print(
        table(
            [
                ("mode", "containers", "runs", "wall s", "ms/run"),
                (
                    "reused (1 per patch)",
                    str(len(work.patches)),
                    str(runs),
                    f"{reused_s:.1f}",
                    f"{1000 * reused_s / runs:.0f}",
                ),
                (
                    "fresh (1 per run)",
                    str(runs),
                    str(runs),
                    f"{fresh_s:.1f}",
                    f"{1000 * fresh_s / runs:.0f}",
                ),
            ]
        )
    )
    print(f"fresh / reused wall time: {fresh_s / reused_s:.2f}x")
    return 0 if reused == fresh else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
