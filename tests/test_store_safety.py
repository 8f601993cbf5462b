"""The store on read-only, archived and damaged run directories, and transactions that fail."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from codemonkeys.errors import StoreDamaged, UserError
from codemonkeys.store import DB_NAME, RunStore


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    with RunStore.open(run) as store:
        store.add_instance("a", "o/r", {"x": 1})
        store.set_instance_state("a", "done", "done")
    return run


def test_read_only_open_changes_nothing_and_sees_a_live_writer(tmp_path: Path) -> None:
    run = _run(tmp_path)
    before = sorted(os.listdir(run)), (run / DB_NAME).read_bytes()
    with RunStore.open_read_only(run) as store:
        assert [row["instance_id"] for row in store.instance_states()] == ["a"]
        with pytest.raises(sqlite3.OperationalError):
            store.set_meta("k", "v")
    assert (sorted(os.listdir(run)), (run / DB_NAME).read_bytes()) == before  # no -wal/-shm left behind
    with RunStore.open(run) as writer:  # a run in progress: its writes sit in the WAL
        writer.add_instance("b", "o/r", {})
        with RunStore.open_read_only(run) as store:
            assert [row["instance_id"] for row in store.instance_states()] == ["a", "b"]


def test_read_only_open_never_creates_a_store(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no run.sqlite"):
        RunStore.open_read_only(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a run directory"):
        RunStore.open_read_only(tmp_path / "file")
    assert os.listdir(tmp_path) == ["file"]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_damaged_store_is_one_user_error_naming_the_file(tmp_path: Path, damage: str) -> None:
    run = _run(tmp_path)
    db = run / DB_NAME
    data = db.read_bytes()
    db.write_bytes({"garbage": b"not a database\n" * 500, "truncated": data[: len(data) // 3], "empty": b""}[damage])
    # An empty file is a valid empty database: a run starts afresh in it, a read refuses it.
    for opener in (RunStore.open_read_only,) if damage == "empty" else (RunStore.open_read_only, RunStore.open):
        with pytest.raises(StoreDamaged) as caught:
            with opener(run) as store:
                store.instance_states()
        assert str(db) in str(caught.value) and "move it away" in str(caught.value)


def test_a_failed_commit_rolls_back_and_the_connection_goes_on(tmp_path: Path) -> None:
    with RunStore.open(tmp_path) as store:
        # A deferred foreign key fails at COMMIT, the case a plain ROLLBACK-on-exception misses.
        store._write("CREATE TEMP TABLE parent (id INTEGER PRIMARY KEY)")
        store._write("CREATE TEMP TABLE child (pid INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")
        with pytest.raises(sqlite3.IntegrityError):
            with store.transaction() as conn:
                conn.execute("INSERT INTO meta VALUES ('half', 'written')")
                conn.execute("INSERT INTO child VALUES (7)")
        assert store.get_meta("half") is None
        store.set_meta("after", "ok")  # not "cannot start a transaction within a transaction"
        assert store.get_meta("after") == "ok"


def test_unknown_filters_are_user_errors(tmp_path: Path) -> None:
    with RunStore.open(tmp_path) as store:
        with pytest.raises(UserError, match="cannot filter by 'kind'"):
            store.calls(kind="generation")
        with pytest.raises(UserError, match="cannot filter by"):
            store.ledger(colour="red")
        assert store.trajectories(kind="generation") == []
