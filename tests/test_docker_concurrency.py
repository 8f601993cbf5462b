"""Runs sharing one Docker engine: containers that vanish mid-listing, and two example runs at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from codemonkeys.sandbox.docker_backend import LABEL, cleanup_leaked, list_sandboxes
from codemonkeys.sandbox.session import current_session
from sandbox_support import docker_client  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("codemonkeys")


class _VanishingApi:
    """The low-level API of an engine where other runs remove containers while we look."""

    def __init__(self, rows: list[dict[str, Any]], gone: set[str], busy: set[str]) -> None:
        self.rows, self.gone, self.busy = rows, gone, busy
        self.removed: list[str] = []

    def containers(self, all: bool = False, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:  # noqa: A002
        wanted = set((filters or {}).get("label", []))
        return [r for r in self.rows if wanted <= {f"{k}={v}" for k, v in r["Labels"].items()}]

    def remove_container(self, container: str, force: bool = False) -> None:
        if container in self.gone:
            raise docker.errors.NotFound(f"No such container: {container}")
        if container in self.busy:
            response = type("R", (), {"status_code": 409, "reason": "Conflict", "url": "x"})()
            raise docker.errors.APIError("removal of container is already in progress", response=response)  # type: ignore[arg-type]
        self.removed.append(container)


class _Containers:
    def list(self, *args: Any, **kwargs: Any) -> list[Any]:
        raise docker.errors.NotFound("inspected a container another run had removed")

    def get(self, name: str) -> Any:
        raise docker.errors.NotFound(name)


class _FakeClient:
    def __init__(self, api: _VanishingApi) -> None:
        self.api = api
        self.containers = _Containers()


def _row(cid: str, **labels: str) -> dict[str, Any]:
    host = current_session().host
    return {"Id": cid, "Names": [f"/codemonkeys-{cid}"], "Labels": {LABEL: "1", f"{LABEL}.host": host, **labels}}


def test_cleanup_skips_containers_that_vanish_or_are_being_removed() -> None:
    me = current_session()
    rows = [
        _row("dead1", **{f"{LABEL}.pid": "999999999", f"{LABEL}.start": "1"}),
        _row("vanished", **{f"{LABEL}.pid": "999999998", f"{LABEL}.start": "1"}),
        _row("busy", **{f"{LABEL}.pid": "999999997", f"{LABEL}.start": "1"}),
        _row("mine", **{f"{LABEL}.pid": str(me.pid), f"{LABEL}.start": me.start}),
        {"Id": "elsewhere", "Names": ["/x"], "Labels": {LABEL: "1", f"{LABEL}.host": "another-host"}},
    ]
    api = _VanishingApi(rows, gone={"vanished"}, busy={"busy"})
    removed = cleanup_leaked(_FakeClient(api))  # type: ignore[arg-type]
    assert removed == ["codemonkeys-dead1"] and api.removed == ["dead1"]  # a live run's container is never touched
    assert [c["id"] for c in list_sandboxes(_FakeClient(api), host="another-host")] == ["elsewhere"]  # type: ignore[arg-type]


@pytest.mark.docker
@pytest.mark.slow
def test_two_example_runs_on_one_engine_do_not_disturb_each_other(tmp_path: Path, docker_client) -> None:  # type: ignore[no-untyped-def]
    if not CLI.is_file():
        pytest.skip(f"no installed console script at {CLI}")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cache = f"environment.cache_dir={tmp_path / 'cache'}"
    # Build the shared environment first, so the two runs overlap in their sandboxes, not in one build.
    warm = subprocess.run([str(CLI), "env", "build", "--dataset", "example", "--set", cache], env=env, capture_output=True, text=True, timeout=900)
    assert warm.returncode == 0, warm.stderr
    runs = [
        subprocess.Popen(
            [str(CLI), "run", "example", "--dataset", "example", "--run-dir", str(tmp_path / name), "--allow-oracle",
             "sandbox.backend=docker", cache],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for name in ("a", "b")
    ]
    for proc in runs:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    for name in ("a", "b"):
        preds = [json.loads(line) for line in (tmp_path / name / "all_preds.jsonl").read_text().splitlines()]
        assert [p["instance_id"] for p in preds] == ["codemonkeys-examples__humansize-1"] and preds[0]["model_patch"]
    pids = {str(proc.pid) for proc in runs}
    assert [c for c in list_sandboxes(docker_client) if c["labels"].get(f"{LABEL}.pid") in pids] == []


@pytest.mark.docker
@pytest.mark.slow
def test_ctrl_c_while_sandboxes_run_tests_is_130_and_the_rerun_finishes(tmp_path: Path, docker_client) -> None:  # type: ignore[no-untyped-def]
    """SIGINT mid-generation (test cells in flight): no asyncio noise from shielded runs, and the rerun resumes."""
    import signal
    import sqlite3
    import time

    if not CLI.is_file():
        pytest.skip(f"no installed console script at {CLI}")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = tmp_path / "run"
    command = [str(CLI), "run", "example", "--dataset", "example", "--run-dir", str(run), "--allow-oracle",
               "sandbox.backend=docker", f"environment.cache_dir={tmp_path / 'cache'}"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def executions() -> int:
        try:
            with sqlite3.connect(f"file:{run / 'run.sqlite'}?mode=ro", uri=True, timeout=1) as conn:
                return int(conn.execute("SELECT COUNT(*) FROM test_executions").fetchone()[0])
        except sqlite3.Error:
            return 0

    try:
        deadline = time.monotonic() + 600
        while proc.poll() is None and executions() == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        if proc.poll() is not None:
            pytest.skip("the run finished before a test cell was recorded")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted; rerun the same command to resume"
    for noise in ("Traceback", "Task exception was never retrieved", "CancelledError", "KeyboardInterrupt"):
        assert noise not in err, err
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    assert "codemonkeys-examples__humansize-1" in (run / "all_preds.jsonl").read_text()
