"""kill -9 a run at random points, rerun it, and get exactly what an uninterrupted run gets.

The run (two instances, oracle models, real Docker sandboxes) goes in its own
process. The test watches its store and kills it with SIGKILL when its
progress (LLM calls + saved turns + test executions) reaches each of five
random thresholds, restarting it after each kill, then lets it finish. The
final predictions, candidates and selections must equal an uninterrupted
run's; no answered request may be paid twice (a call killed in flight is on the
books as its first attempt); no container may be left behind.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codemonkeys.edits import normalize_patch
from codemonkeys.sandbox.docker_backend import list_sandboxes
from codemonkeys.store import DB_NAME, RunStore
from pipeline_support import shapes  # noqa: F401
from sandbox_support import docker_client  # noqa: F401

pytestmark = [pytest.mark.docker, pytest.mark.slow]

TESTS = Path(__file__).resolve().parent
PROGRESS = (
    "SELECT (SELECT COUNT(*) FROM llm_calls) + (SELECT COUNT(*) FROM turns) + (SELECT COUNT(*) FROM test_executions)"
)


def _start(run_dir: Path, mirrors: Path, image: str, commit: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    return subprocess.Popen(
        [sys.executable, str(TESTS / "crash_driver.py"), str(run_dir), str(mirrors), image, commit],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def _progress(run_dir: Path) -> int:
    path = run_dir / DB_NAME
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute(PROGRESS).fetchone()[0])
    except sqlite3.Error:
        return 0


def _outputs(run_dir: Path) -> dict[str, object]:
    with RunStore.open_existing(run_dir) as store:
        instances = [row["instance_id"] for row in store.instance_states()]
        return {
            "preds": sorted(
                (row["instance_id"], normalize_patch(row["model_patch"]))
                for row in map(json.loads, (run_dir / "all_preds.jsonl").read_text().splitlines())
            ),
            "candidates": {i: sorted(normalize_patch(c["patch"]) for c in store.candidates(i)) for i in instances},
            "selections": {i: (store.selection(i) or {}).get("candidate_id") for i in instances},
            "states": {row["instance_id"]: (row["stage"], row["status"]) for row in store.instance_states()},
        }


def _containers(client, pids: set[int]) -> list[str]:  # type: ignore[no-untyped-def]
    """Sandboxes made by this test's processes (other runs on the engine are not this test's to count)."""
    return [c["id"] for c in list_sandboxes(client) if c["labels"].get("codemonkeys.pid") in {str(p) for p in pids}]


def test_kill_nine_at_five_points_then_resume(tmp_path: Path, shapes, docker_client) -> None:  # type: ignore[no-untyped-def]
    commit, mirrors, ref = shapes
    clean = _start(tmp_path / "clean", mirrors, ref.image, commit)
    assert clean.wait(timeout=300) == 0, clean.stderr.read().decode() if clean.stderr else ""
    expected = _outputs(tmp_path / "clean")
    total = _progress(tmp_path / "clean")
    assert expected["states"] and all(state == ("done", "done") for state in expected["states"].values())

    rng = random.Random(1234)
    thresholds = sorted(rng.sample(range(max(2, total // 20), total * 9 // 10), 5))
    run_dir = tmp_path / "crashed"
    kills = 0
    pids: set[int] = set()
    for threshold in thresholds:
        proc = _start(run_dir, mirrors, ref.image, commit)
        pids.add(proc.pid)
        deadline = time.monotonic() + 300
        while proc.poll() is None and _progress(run_dir) < threshold and time.monotonic() < deadline:
            time.sleep(0.02)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
    assert kills == 5, f"the run finished before some kill point ({thresholds}, total {total})"

    final = _start(run_dir, mirrors, ref.image, commit)
    assert final.wait(timeout=300) == 0, final.stderr.read().decode() if final.stderr else ""
    assert _outputs(run_dir) == expected

    with RunStore.open_existing(run_dir) as store:
        calls = store.calls()
    # A call killed in flight stays on the books as its first attempt ("retried", priced by the retry
    # that answered it); apart from those, no answered request was paid twice.
    paid = [c.request_hash for c in calls if not c.cached and c.error_kind is None and c.state == "settled"]
    assert len(paid) == len(set(paid)), "a request was paid twice"
    assert not [c for c in calls if c.state == "started"], "an attempt was left unpriced"
    assert all(c.request_hash in paid for c in calls if c.state == "retried")
    pids.add(final.pid)
    assert _containers(docker_client, pids) == [], "a killed run's container was left behind"
