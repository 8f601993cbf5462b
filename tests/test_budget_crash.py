"""kill -9 with calls in flight: they stay on the books at their worst case, and a resume shows both attempts.

The context stage runs in its own process through the real Anthropic SDK
against the loopback server, which answers slowly. The test kills the process
while calls are in flight (recorded ``started`` before they were sent), checks
that the books hold them at their reserved worst case (so a resumed run's
budget counts them), reruns the same work to the end, and checks that the
first attempts are on the books, priced by their paid retries.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from codemonkeys.budget import BudgetGuard
from codemonkeys.cli.main import main
from codemonkeys.config import BudgetConfig
from codemonkeys.context.ranking import render_ranking
from codemonkeys.context.relevance import RelevanceAnswer, render_answer
from codemonkeys.store import DB_NAME, RunStore
from codemonkeys.testing import fake_wire as wire
from codemonkeys.testing.fake_server import FakeLLMServer
from context_support import make_repo

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")
TESTS = Path(__file__).resolve().parent


def responder(body: dict[str, Any]) -> str:
    text = "\n".join(block.text for block in wire.anthropic_blocks(body))
    listed = re.findall(r'<file path="([^"]+)" tokens=', text)
    if listed:
        return "Dates first.\n" + render_ranking(sorted(listed))
    path = re.findall(r'<file path="([^"]+)">', text)[-1]
    return render_answer(RelevanceAnswer(path == "pkg/dates.py", "Defines parse_date."))


def _driver(run_dir: Path, repo: Path, commit: str, url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, str(TESTS / "books_crash_driver.py"), str(run_dir), str(repo), commit, url],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def _states(run_dir: Path) -> dict[str, int]:
    path = run_dir / DB_NAME
    if not path.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as conn:
            return dict(conn.execute("SELECT state, COUNT(*) FROM llm_calls GROUP BY state").fetchall())
    except sqlite3.Error:
        return {}


def test_a_call_killed_in_flight_stays_on_the_books_and_the_resume_shows_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, run_dir = tmp_path / "repo", tmp_path / "run"
    commit = make_repo(repo)
    with FakeLLMServer(responder, latency_s=1.0) as server:
        process = _driver(run_dir, repo, commit, server.anthropic_base_url)
        deadline = time.monotonic() + 60
        while _states(run_dir).get("started", 0) == 0:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "no call was started"
            time.sleep(0.02)
        time.sleep(0.3)  # sent, not answered (the server takes a second)
        process.kill()
        process.wait()
        with RunStore.open_existing(run_dir) as store:
            killed = [c for c in store.calls() if c.state == "started"]
            booked = store.total_cost()
            guard = BudgetGuard.for_run(BudgetConfig(total_usd=5), store)
        assert killed and all(c.reserved_usd for c in killed)
        assert booked >= sum(c.reserved_usd or 0 for c in killed) > 0  # at their worst case
        assert guard.spent_total == pytest.approx(booked)  # what a resumed run's budget starts from
        main(["costs", str(run_dir)])
        assert "in flight when their process died" in " ".join(capsys.readouterr().out.split())
        sent_before = server.request_count

        resumed = _driver(run_dir, repo, commit, server.anthropic_base_url)
        assert resumed.wait(timeout=120) == 0, resumed.stderr.read().decode() if resumed.stderr else ""
        assert server.request_count > sent_before

    with RunStore.open_existing(run_dir) as store:
        calls = store.calls()
        total = store.total_cost()
    by_id = {c.request_hash: [x for x in calls if x.request_hash == c.request_hash] for c in killed}
    for request_hash, attempts in by_id.items():
        states = [a.state for a in attempts]
        assert states == ["retried", "settled"], states  # the first attempt, and the paid retry
        assert attempts[0].cost_usd == attempts[1].cost_usd and (attempts[1].cost_usd or 0) > 0
    assert not [c for c in calls if c.state == "started"]
    assert total == pytest.approx(sum(c.cost_usd or 0 for c in calls))
