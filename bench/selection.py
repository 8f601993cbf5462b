"""The selection execution matrix on a real instance: first run, cached rerun, one container per cell.

10 reproduction tests x (10 distinct candidate patches + the original code) on
pytest-dev__pytest-7982 ("symlinked directories not collected"), three ways:

* first run:   ``run_matrix`` through the cached ``TestRunner`` and a pool of reused sandboxes;
* rerun:       the same matrix again on the same store (every cell from the cache);
* per cell:    a fresh container for every cell (start, apply, run, remove), same parallelism.

Patches: the instance's real submissions and gold patch, plus variants written
here (right and wrong ones) until there are 10 distinct after normalization.
Tests: 10 scripts derived from its FAIL_TO_PASS test (exit 0 = fixed, 2 = not).
The per-cell outcomes must equal the first run's; the table prints the wall times.

    python bench/selection.py [--image IMAGE] [--pool 4] [--mirror-dir /work/mirrors]

Without ``--image`` the instance image comes from the environment builder (built if missing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from codemonkeys.config import SandboxConfig, load_config
from codemonkeys.edits import make_diff, patch_hash
from codemonkeys.ensemble import load_predictions
from codemonkeys.execution import SandboxPool, TestRunner
from codemonkeys.sandbox.base import EnvironmentRef, Sandbox
from codemonkeys.sandbox.docker_backend import DockerSandboxFactory
from codemonkeys.selection import group_candidates, make_tests, rank_candidates, run_matrix
from codemonkeys.selection.voting import Candidate
from codemonkeys.store import RunStore
from codemonkeys.swebench.instances import Instance, load_instances
from codemonkeys.swebench.repo import RepoSource, read_file_at

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
INSTANCE = "pytest-dev__pytest-7982"
FIXED_FILE = "src/_pytest/pathlib.py"
BUGGY_LINE = "        if entry.is_dir(follow_symlinks=False) and recurse(entry):\n"

# Rewrites of the buggy line: (new text, fixes the issue?) - the variants that complete the 10.
VARIANTS = [
    ("        if entry.is_dir() and recurse(entry):  # follow symlinks, as before 6.1\n", True),
    ("        if os.path.isdir(entry.path) and recurse(entry):\n", True),
    ("        if entry.is_dir(follow_symlinks=True) and recurse(entry):\n", True),
    ("        # symlinks are not followed on purpose\n" + BUGGY_LINE, False),
    ("        if entry.is_dir(follow_symlinks=False) and not entry.is_symlink() and recurse(entry):\n", False),
    ("        if entry.is_symlink() and recurse(entry):\n", False),
    ("        if (entry.is_dir() or entry.is_symlink()) and recurse(entry):\n", True),
    ("        if entry.is_dir() and not entry.name.startswith('.') and recurse(entry):\n", True),
]

_SCRIPT = '''\
import os, subprocess, sys, tempfile
from pathlib import Path

root = Path(tempfile.mkdtemp())
{setup}
result = subprocess.run(
    [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *{args!r}],
    cwd=root, capture_output=True, text=True, timeout=60,
)
print(result.stdout[-3000:])
print(result.stderr[-2000:])
summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
print("summary:", summary)
sys.exit(0 if {check} else 2)
'''

_TEST_FILE = '(d / "test_{name}.py").write_text("def test_{name}():\\n    assert True\\n")'

# (setup lines, pytest args, expected passes); the last ones already pass on the original code.
_TESTS = [
    (['d = root / "real"; d.mkdir()', _TEST_FILE.format(name="it"), '(root / "link").symlink_to(d)'], [], 2),
    (['d = root / "real"; d.mkdir()', _TEST_FILE.format(name="it"), '(root / "link").symlink_to(d)'], ["--collect-only"], 2),
    (['d = root / "a" / "b"; d.mkdir(parents=True)', _TEST_FILE.format(name="deep"),
      '(root / "c").mkdir()', '(root / "c" / "link").symlink_to(d)'], [], 2),
    (['d = Path(tempfile.mkdtemp()) / "outside"; d.mkdir()', _TEST_FILE.format(name="out"),
      '(root / "tests").mkdir()', '(root / "tests" / "ext").symlink_to(d)'], [], 1),
    (['d = root / "pkg"; d.mkdir()', '(d / "__init__.py").write_text("")', _TEST_FILE.format(name="pkg"),
      '(root / "pkglink").symlink_to(d)'], ["pkglink"], 1),
    (['d = root / "real"; d.mkdir()', _TEST_FILE.format(name="one"), '(root / "l1").symlink_to(d)',
      '(root / "l2").symlink_to(d)'], [], 3),
    (['d = root / "real"; d.mkdir()', '(d / "conftest.py").write_text("import pytest\\n@pytest.fixture\\ndef v():\\n    return 1\\n")',
      '(d / "test_fx.py").write_text("def test_fx(v):\\n    assert v == 1\\n")', '(root / "link").symlink_to(d)'], [], 2),
    (['d = root / "real"; d.mkdir()', _TEST_FILE.format(name="it"), '(root / "sub").mkdir()',
      '(root / "sub" / "link").symlink_to(d)'], ["sub"], 1),
    (['d = root / "x" / "y"; d.mkdir(parents=True)', _TEST_FILE.format(name="plain")], [], 1),
    (['(root / "real.py").write_text("def test_f():\\n    assert True\\n")', '(root / "test_link.py").symlink_to(root / "real.py")'],
     ["test_link.py"], 1),
]


def reproduction_scripts() -> list[str]:
    scripts = []
    for setup, args, expected in _TESTS:
        if "--collect-only" in args:  # count the collected node ids
            check = f'result.stdout.count("::test_") == {expected}'
        else:
            check = f'"{expected} passed" in summary and "failed" not in summary and "error" not in summary'
        script = _SCRIPT.replace("{setup}", "\n".join(setup)).replace("{args!r}", repr(args))
        scripts.append(script.replace("{check}", check))
    return scripts


def candidate_patches(instance: Instance, source: RepoSource, count: int) -> list[str]:
    """Submissions' patches and the gold patch, then variants, until ``count`` distinct ones."""
    patches: dict[str, str] = {}
    for preds in sorted((DATA / "submissions" / "verified").glob("*/all_preds.jsonl")):
        patch = load_predictions(preds).patches.get(instance.instance_id)
        if patch:
            patches.setdefault(patch_hash(patch), patch)
    patches.setdefault(patch_hash(instance.patch), instance.patch)
    original = read_file_at(source.ensure_commit(instance.repo, instance.base_commit), instance.base_commit, FIXED_FILE)
    assert BUGGY_LINE in original, "the instance's code is not what the variants expect"
    for line, _ in VARIANTS:
        if len(patches) >= count:
            break
        patch = make_diff({FIXED_FILE: original}, {FIXED_FILE: original.replace(BUGGY_LINE, line)})
        patches.setdefault(patch_hash(patch), patch)
    return list(patches.values())[:count]


class OneShotPool:
    """Duck-types ``SandboxPool`` for ``TestRunner``: a new container for every cell."""

    def __init__(self, factory: DockerSandboxFactory, env: EnvironmentRef, size: int) -> None:
        self.env = env
        self._factory = factory
        self._slots = asyncio.Semaphore(size)
        self.started = 0

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Sandbox]:
        async with self._slots, self._factory.sandbox(self.env) as sandbox:
            self.started += 1
            yield sandbox


async def timed_matrix(runner: TestRunner, tests, groups):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    matrix = await run_matrix(runner, tests, groups)
    return matrix, time.monotonic() - started


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--image", help="use this local instance image instead of asking the environment builder")
    parser.add_argument("--mirror-dir", type=Path, default=Path("/work/mirrors"), help="DIR/<owner>__<repo> git mirrors")
    parser.add_argument("--pool", type=int, default=4, help="sandboxes (containers) running at once")
    parser.add_argument("--patches", type=int, default=10)
    args = parser.parse_args(argv)

    cfg = load_config(None, [f"environment.mirror_dir={args.mirror_dir.resolve()}"])
    [instance] = load_instances(DATA / "swebench" / "verified_dev.jsonl", instance_ids=[INSTANCE])
    if args.image:
        env = EnvironmentRef(key=f"image:{args.image}", image=args.image, python="/opt/venv/bin/python")
    else:
        from codemonkeys.env.images import ImageBuilder

        env = ImageBuilder(cfg.environment, progress=print).ensure_instance(instance).ref
    source = RepoSource(mirror_dir=args.mirror_dir, cache_dir=Path(tempfile.gettempdir()) / "codemonkeys-bench-repos")
    patches = candidate_patches(instance, source, args.patches)
    groups = group_candidates([Candidate(id=f"p{i}", patch=p) for i, p in enumerate(patches)])
    tests = make_tests(reproduction_scripts())
    cells = len(tests) * (len(groups) + 1)
    factory = DockerSandboxFactory(SandboxConfig(command_timeout_s=300))
    rows = [["mode", "cells", "executed", "containers", "wall s", "s per cell"]]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = RunStore.open(Path(tmp) / "run")
            async with SandboxPool(factory, env, size=args.pool) as pool:
                runner = TestRunner(pool, store, timeout_s=120)
                first, first_s = await timed_matrix(runner, tests, groups)
                rows.append(["first run (pool)", str(cells), str(runner.executed), str(pool.started), f"{first_s:.1f}", f"{first_s / cells:.2f}"])
            async with SandboxPool(factory, env, size=args.pool) as pool:
                runner = TestRunner(pool, store, timeout_s=120)
                again, again_s = await timed_matrix(runner, tests, groups)
                rows.append(["cached rerun", str(cells), str(runner.executed), str(pool.started), f"{again_s:.2f}", f"{again_s / cells:.4f}"])
            assert again.outcomes == first.outcomes
            one_shot = OneShotPool(factory, env, args.pool)
            runner = TestRunner(one_shot, RunStore.open(Path(tmp) / "fresh"), timeout_s=120)  # type: ignore[arg-type]
            fresh, fresh_s = await timed_matrix(runner, tests, groups)
            rows.append(["container per cell", str(cells), str(runner.executed), str(one_shot.started), f"{fresh_s:.1f}", f"{fresh_s / cells:.2f}"])
    finally:
        factory.close()
    same = fresh.outcomes == first.outcomes
    ranking = rank_candidates(groups, first.results, first.original)
    print(f"{INSTANCE} on {env.image}: {len(tests)} tests x ({len(groups)} candidates + original), pool of {args.pool}")
    print(table(rows))
    print(f"per-cell outcomes equal to the first run's: {same}; flaky cells: {len(first.flaky)}")
    print("votes by candidate: " + json.dumps({r.group.member_ids[0]: r.votes for r in ranking}))
    print(f"counted tests (not passing on the original): {sum(1 for o in first.original.values() if o != 'fixed')} of {len(tests)}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
