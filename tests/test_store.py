"""The run store: writes, reads, the ledger, and resuming after a process is killed mid-write."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from codemonkeys.errors import UserError
from codemonkeys.llm.gateway import Gateway
from codemonkeys.llm.pricing import PriceTable
from codemonkeys.llm.scripted import ScriptedModel
from codemonkeys.llm.types import CallTag, ChatRequest, Message
from codemonkeys.store import (
    DB_NAME,
    CallRecord,
    RunStore,
    TestExecution,
    TrajectoryRecord,
    TurnRecord,
)

# --- resume after a crash ----------------------------------------------------------------

CRASHING_RUN = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from codemonkeys.config import Price
    from codemonkeys.llm.gateway import Gateway
    from codemonkeys.llm.pricing import PriceTable
    from codemonkeys.llm.scripted import ScriptedModel
    from codemonkeys.llm.types import CallTag, ChatRequest, Message
    from codemonkeys.store import RunStore, TrajectoryRecord, TurnRecord

    store = RunStore.open(Path(sys.argv[1]))
    done = int(sys.argv[2])
    model = ScriptedModel(lambda request: "fix for " + request.messages[0].content)
    gateway = Gateway(model, store, PriceTable({"scripted": Price(input=1.0, output=2.0)}))

    async def work():
        for i in range(done):
            await gateway.complete(ChatRequest((Message("user", f"file {i}"),)), CallTag("relevance", "inst-1"))

    asyncio.run(work())
    trajectory = TrajectoryRecord("inst-1/edit-0", "inst-1", "editing", 0, "running")
    store.save_turn(TurnRecord("inst-1/edit-0", 0, '{"turn": 0}'), trajectory)
    with store.transaction() as conn:  # killed between the writes and the commit
        conn.execute("INSERT INTO meta VALUES ('half-written', 'yes')")
        conn.execute("UPDATE trajectories SET status='done'")
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


def _requests(count: int) -> list[ChatRequest]:
    return [ChatRequest((Message("user", f"file {i}"),)) for i in range(count)]


def test_resume_after_a_crash_mid_transaction(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    done, total = 7, 12
    killed = subprocess.run(
        [sys.executable, "-c", CRASHING_RUN, str(run_dir), str(done)], check=False, timeout=60
    )
    assert killed.returncode == -9  # SIGKILL: no cleanup ran

    check = sqlite3.connect(run_dir / DB_NAME)
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    check.close()

    with RunStore.open(run_dir) as store:
        # Everything committed survived; the half-written transaction did not.
        assert len(store.calls(stage="relevance")) == done
        assert store.get_meta("half-written") is None
        assert store.trajectory("inst-1/edit-0").status == "running"
        assert [t.data for t in store.turns("inst-1/edit-0")] == ['{"turn": 0}']

        # The rerun: answers already paid for come from the cache; only the rest reach the model.
        model = ScriptedModel(lambda request: "fix for " + request.messages[0].content)
        gateway = Gateway(model, store, PriceTable({}))

        async def rerun() -> list[str]:
            tag = CallTag("relevance", "inst-1")
            return [(await gateway.complete(request, tag)).text for request in _requests(total)]

        texts = asyncio.run(rerun())
        assert texts == [f"fix for file {i}" for i in range(total)]
        assert [call.request.messages[0].content for call in model.calls] == [
            f"file {i}" for i in range(done, total)
        ]
        (row,) = store.ledger(group_by=("stage",))
        assert (row.calls, row.cached_calls) == (done + total, done)
        assert row.cost_usd == pytest.approx(sum(c.cost_usd or 0.0 for c in store.calls()[:done]))


# --- writes and reads -----------------------------------------------------------------------


def _call(stage: str = "ranking", **fields: object) -> CallRecord:
    base: dict[str, object] = {
        "stage": stage, "instance_id": "i-1", "trajectory": None, "request_hash": f"h-{stage}",
        "model": "anthropic:claude-test", "input_tokens": 10, "output_tokens": 5, "cost_usd": 0.001,
    }  # fmt: skip
    return CallRecord(**{**base, **fields})  # type: ignore[arg-type]


def test_call_and_cache_entry_land_together(run_store: RunStore) -> None:
    run_store.record_call(_call(request_hash="abc"), cache_response='{"text": "hi"}')
    assert run_store.cached_response("abc") == '{"text": "hi"}'
    assert run_store.cached_response("missing") is None
    (call,) = run_store.calls()
    assert (call.input_tokens, call.cost_usd, call.cached) == (10, 0.001, False)


def test_failed_transaction_leaves_nothing(run_store: RunStore) -> None:
    with pytest.raises(RuntimeError), run_store.transaction() as conn:
        conn.execute("INSERT INTO meta VALUES ('x', '1')")
        raise RuntimeError("boom")
    assert run_store.get_meta("x") is None
    run_store.set_meta("x", "2")  # and the store is still usable
    assert run_store.get_meta("x") == "2"


def test_ledger_groups_filters_and_unpriced(run_store: RunStore) -> None:
    run_store.record_call(_call("ranking", cost_usd=0.25))
    run_store.record_call(_call("ranking", instance_id="i-2", cost_usd=0.5))
    run_store.record_call(_call("editing", cost_usd=None))
    run_store.record_call(_call("editing", cost_usd=None, error_kind="infra", error="HTTP 529"))
    rows = {row.group: row for row in run_store.ledger(group_by=("stage",))}
    assert rows[("ranking",)].cost_usd == 0.75 and rows[("ranking",)].unpriced_calls == 0
    assert rows[("editing",)].unpriced_calls == 1 and rows[("editing",)].failed_calls == 1
    assert run_store.total_cost(instance_id="i-2") == 0.5
    assert run_store.total_cost(stage="editing") == 0.0
    assert [row.group for row in run_store.ledger(group_by=("instance_id", "stage"))] == [
        ("i-1", "editing"),
        ("i-1", "ranking"),
        ("i-2", "ranking"),
    ]
    with pytest.raises(UserError, match="cannot group"):
        run_store.ledger(group_by=("cost_usd",))
    with pytest.raises(UserError, match="cannot filter"):
        run_store.calls(error="x")


def test_concurrent_writers_from_threads(run_store: RunStore) -> None:
    def writer(n: int) -> None:
        for i in range(50):
            run_store.record_call(_call(f"s{n}", request_hash=f"{n}-{i}"), cache_response="{}")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(run_store.calls()) == 200
    assert all(row.calls == 50 for row in run_store.ledger(group_by=("stage",)))


def test_instances_trajectories_results_and_executions(run_store: RunStore) -> None:
    run_store.add_instance("i-1", "astropy/astropy", {"problem_statement": "bug"})
    run_store.set_instance_state("i-1", "editing", "failed", "infra", "sandbox died")
    run_store.add_instance(
        "i-1", "astropy/astropy", {"problem_statement": "bug v2"}
    )  # keeps progress
    (state,) = run_store.instance_states()
    assert (state["stage"], state["status"], state["failure_kind"]) == (
        "editing",
        "failed",
        "infra",
    )
    assert run_store.instance_data("i-1") == {"problem_statement": "bug v2"}
    with pytest.raises(KeyError):
        run_store.instance_data("nope")

    run_store.put_result("i-1", "context", "ranking", {"files": ["a.py"]})
    assert run_store.get_result("i-1", "context", "ranking") == {"files": ["a.py"]}
    assert run_store.get_result("i-1", "context", "other") is None

    record = TrajectoryRecord("i-1/test-0", "i-1", "testing", 0, "running", state='{"n": 1}')
    run_store.save_turn(TurnRecord("i-1/test-0", 0, "{}"), record)
    run_store.save_turn(TurnRecord("i-1/test-0", 1, "{}"))
    run_store.save_trajectory(TrajectoryRecord("i-1/test-1", "i-1", "testing", 1, "done"))
    assert [t.turn for t in run_store.turns("i-1/test-0")] == [0, 1]
    assert [t.index for t in run_store.trajectories("i-1", "testing")] == [0, 1]
    assert run_store.trajectory("i-1/test-0") == record

    execution = TestExecution("env", "patch", "test", 0, 1, "FAILED", 2.5)
    run_store.put_execution(execution)
    assert run_store.get_execution("env", "patch", "test") == execution
    assert run_store.get_execution("env", "patch", "test", attempt=1) is None

    run_store.add_candidate("c-1", "i-1", "editing", "diff", "ph", {"votes": 3})
    run_store.put_selection("i-1", "c-1", "vote", {"scores": [1]})
    assert run_store.candidates("i-1")[0]["data"] == {"votes": 3}
    assert run_store.selection("i-1")["candidate_id"] == "c-1"  # type: ignore[index]


def test_opening_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a directory"):
        RunStore.open(tmp_path / "file")
    with pytest.raises(UserError, match="not a run directory"):
        RunStore.open_existing(tmp_path / "empty")
    with RunStore.open(tmp_path / "run") as store:
        store.set_meta("schema_version", "999")
    with pytest.raises(UserError, match="schema 999"):
        RunStore.open(tmp_path / "run")


def test_a_store_from_before_call_states_is_migrated_or_read_as_settled(tmp_path: Path) -> None:
    """Older stores have no ``state``/``reserved_usd`` columns: a writer adds them, a reader does without."""
    import sqlite3

    from codemonkeys.store.sqlite import DB_NAME

    for mode in ("read", "write"):
        run = tmp_path / mode
        with RunStore.open(run) as store:
            store.record_call(CallRecord("editing", "i", "t", "h", "m", cost_usd=0.5))
        with sqlite3.connect(run / DB_NAME) as conn:
            conn.execute("ALTER TABLE llm_calls DROP COLUMN state")
            conn.execute("ALTER TABLE llm_calls DROP COLUMN reserved_usd")
        opened = RunStore.open_read_only(run) if mode == "read" else RunStore.open(run)
        with opened as store:
            [call] = store.calls()
            assert call.state == "settled" and store.total_cost() == 0.5
            assert store.ledger(group_by=())[0].started_calls == 0
            if mode == "write":
                store.start_call(CallRecord("editing", "i", "t", "h2", "m", state="started", reserved_usd=0.25))
                assert store.total_cost() == 0.75
