"""The run store: one SQLite database (WAL mode) per run directory.

Every write is its own transaction, so a killed process loses at most the
write in flight. The connection is shared by threads (sandbox work runs in
worker threads) behind one lock; SQLite itself serializes the rest.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import StoreDamaged, UserError
from .records import CallRecord, ContextDecision, LedgerRow, TestExecution, TrajectoryRecord, TurnRecord

DB_NAME = "run.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    repo TEXT NOT NULL,
    data TEXT NOT NULL,
    stage TEXT NOT NULL DEFAULT 'pending',
    status TEXT NOT NULL DEFAULT 'pending',
    failure_kind TEXT,
    failure TEXT,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS llm_calls (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    stage TEXT NOT NULL,
    instance_id TEXT,
    trajectory TEXT,
    request_hash TEXT NOT NULL,
    model TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cost_usd REAL,
    latency_s REAL NOT NULL,
    cached INTEGER NOT NULL,
    error_kind TEXT,
    error TEXT,
    state TEXT NOT NULL DEFAULT 'settled',
    reserved_usd REAL,
    usage_estimated INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS llm_calls_instance ON llm_calls (instance_id, stage);
CREATE TABLE IF NOT EXISTS response_cache (
    request_hash TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS context_decisions (
    instance_id TEXT NOT NULL,
    path TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    status TEXT NOT NULL,
    relevant INTEGER,
    summary TEXT,
    tokens INTEGER,
    detail TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (instance_id, path, content_hash, model, prompt_version)
);
CREATE TABLE IF NOT EXISTS token_counts (
    tokenizer TEXT NOT NULL,
    blob TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    PRIMARY KEY (tokenizer, blob)
);
CREATE TABLE IF NOT EXISTS stage_results (
    instance_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    key TEXT NOT NULL,
    data TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (instance_id, stage, key)
);
CREATE TABLE IF NOT EXISTS trajectories (
    trajectory_id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    idx INTEGER NOT NULL,
    status TEXT NOT NULL,
    failure_kind TEXT,
    failure TEXT,
    state TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS trajectories_instance ON trajectories (instance_id, kind);
CREATE TABLE IF NOT EXISTS turns (
    trajectory_id TEXT NOT NULL,
    turn INTEGER NOT NULL,
    data TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (trajectory_id, turn)
);
CREATE TABLE IF NOT EXISTS candidates (
    candidate_id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    source TEXT NOT NULL,
    patch TEXT NOT NULL,
    patch_hash TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS candidates_instance ON candidates (instance_id);
CREATE TABLE IF NOT EXISTS test_executions (
    env_key TEXT NOT NULL,
    patch_hash TEXT NOT NULL,
    test_hash TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    exit_code INTEGER,
    timed_out INTEGER NOT NULL,
    output TEXT NOT NULL,
    duration_s REAL NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (env_key, patch_hash, test_hash, attempt)
);
CREATE TABLE IF NOT EXISTS selections (
    instance_id TEXT PRIMARY KEY,
    candidate_id TEXT,
    method TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""

_LEDGER_COLUMNS = frozenset({"stage", "model", "instance_id", "trajectory"})
_TRAJECTORY_COLUMNS = frozenset({"instance_id", "kind"})
_WAY_OUT = "move it away (or pass a new --run-dir) to start over, or restore it from a backup"
_DAMAGED = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_UNWRITABLE = {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM}


def _existing(run_dir: Path) -> Path:
    run_dir = Path(run_dir).expanduser()
    path = run_dir / DB_NAME
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a run directory ({'a file' if run_dir.exists() else 'no such directory'})")
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run directory (no {DB_NAME})")
    return path


def _connect(path: Path, *, read_only: bool) -> sqlite3.Connection:
    """A connection; read-only ones go through a ``mode=ro`` URI and create no files.

    A store nobody has open has no ``-wal`` file. Reading it ``mode=ro`` would
    leave ``-wal`` and ``-shm`` behind, so it is opened ``immutable`` instead
    (nothing is writing it); a store a live run holds open is read ``mode=ro``
    through that run's WAL. A crashed run's WAL in a read-only directory cannot
    be read: then the main file alone is (its last writes may be missing).
    """
    if not read_only:
        return sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30.0)
    uri = path.resolve().as_uri()
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        try:
            conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False, isolation_level=None, timeout=30.0)
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return conn
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in _UNWRITABLE:
                raise
    return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, check_same_thread=False, isolation_level=None)


@contextmanager
def _sqlite_errors(path: Path, *, read_only: bool) -> Iterator[None]:
    """SQLite's damaged-file and unwritable-file errors as one-line user errors naming the file."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code in _DAMAGED:
            raise StoreDamaged(f"{path} is damaged ({exc}): {_WAY_OUT}") from exc
        if code in _UNWRITABLE and not read_only:
            raise UserError(
                f"{path} cannot be written ({exc}); status, costs, report and export still read it"
            ) from exc
        raise


class RunStore:
    """All persistent state of one run."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._legacy_calls = False
        self._lock = threading.RLock()
        with _sqlite_errors(path, read_only=read_only):
            self._conn = _connect(path, read_only=read_only)
            self._conn.row_factory = sqlite3.Row
            with self._lock:
                if read_only:
                    self._check_schema(self._read_schema_version())
                    # A store written before calls had states (read, never migrated, here).
                    self._legacy_calls = "state" not in {r[1] for r in self._conn.execute("PRAGMA table_info(llm_calls)")}
                    return
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.execute("PRAGMA foreign_keys=ON")
                self._conn.executescript(_SCHEMA)
                _add_missing_columns(self._conn)
                row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if row is None:
                    self._conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                self._check_schema(row)

    def _read_schema_version(self) -> sqlite3.Row | None:
        try:
            return self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()  # type: ignore[no-any-return]
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            raise StoreDamaged(f"{self.path} is not a codemonkeys run store ({exc}): {_WAY_OUT}") from exc

    def _check_schema(self, row: sqlite3.Row | None) -> None:
        if row is None:
            if self.read_only:
                raise StoreDamaged(f"{self.path} has no schema version: {_WAY_OUT}")
            return
        if int(row["value"]) != SCHEMA_VERSION:
            raise UserError(f"{self.path} has store schema {row['value']}, this version reads {SCHEMA_VERSION}")

    # --- lifecycle ------------------------------------------------------------

    @classmethod
    def open(cls, run_dir: Path) -> RunStore:
        """Open (creating if needed) the store of ``run_dir``."""
        run_dir = Path(run_dir).expanduser()
        if run_dir.exists() and not run_dir.is_dir():
            raise UserError(f"run directory {run_dir} exists and is not a directory")
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create run directory {run_dir}: {exc.strerror}") from exc
        return cls(run_dir / DB_NAME)

    @classmethod
    def open_existing(cls, run_dir: Path) -> RunStore:
        """Open the store of a run that must already exist, for writing (``select`` on a run)."""
        return cls(_existing(run_dir))

    @classmethod
    def open_read_only(cls, run_dir: Path) -> RunStore:
        """Open the store of an existing run for reading only (status, costs, report, export, show).

        Works on read-only and archived run directories and never changes the
        directory: no schema script, no WAL switch, no files created.
        """
        return cls(_existing(run_dir), read_only=True)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Several writes that land together or not at all; a failed COMMIT rolls back too."""
        with self._lock, _sqlite_errors(self.path, read_only=self.read_only):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock, _sqlite_errors(self.path, read_only=self.read_only):
            return self._conn.execute(sql, params).fetchall()

    def _write(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self._lock, _sqlite_errors(self.path, read_only=self.read_only):
            self._conn.execute(sql, params)

    # --- meta -----------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0]["value"] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._write("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

    # --- instances ------------------------------------------------------------

    def add_instance(self, instance_id: str, repo: str, data: dict[str, Any]) -> None:
        """Register an instance; an existing row keeps its progress."""
        self._write(
            "INSERT INTO instances (instance_id, repo, data, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(instance_id) DO UPDATE SET data=excluded.data",
            (instance_id, repo, json.dumps(data), time.time()),
        )

    def set_instance_state(
        self,
        instance_id: str,
        stage: str,
        status: str,
        failure_kind: str | None = None,
        failure: str | None = None,
    ) -> None:
        self._write(
            "UPDATE instances SET stage=?, status=?, failure_kind=?, failure=?, updated_at=? WHERE instance_id=?",
            (stage, status, failure_kind, failure, time.time(), instance_id),
        )

    def instance_states(self) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT instance_id, repo, stage, status, failure_kind, failure, updated_at FROM instances ORDER BY instance_id"
        )
        return [dict(row) for row in rows]

    def instance_data(self, instance_id: str) -> dict[str, Any]:
        rows = self._query("SELECT data FROM instances WHERE instance_id=?", (instance_id,))
        if not rows:
            raise KeyError(instance_id)
        return json.loads(rows[0]["data"])

    # --- LLM calls and response cache ----------------------------------------

    def record_call(self, record: CallRecord, cache_response: str | None = None) -> None:
        """Append a call to the ledger, and cache its response in the same transaction."""
        with self.transaction() as conn:
            conn.execute(_INSERT_CALL, _call_values(record))
            if cache_response is not None:
                _cache(conn, record, cache_response)

    def start_call(self, record: CallRecord) -> int:
        """Record a call as started, at its reserved worst case, before it is sent; its row id."""
        with self.transaction() as conn:
            cursor = conn.execute(_INSERT_CALL, _call_values(record))
            return int(cursor.lastrowid or 0)

    def finish_call(self, call_id: int, record: CallRecord, cache_response: str | None = None) -> None:
        """Settle a started call with its answer (or error), caching the response in the same transaction.

        An answered request also prices the attempts of it that an earlier process
        left ``started`` (killed in flight): they become ``retried`` at this cost.
        """
        values = _call_values(record)[1:]
        with self.transaction() as conn:
            conn.execute(
                "UPDATE llm_calls SET stage=?, instance_id=?, trajectory=?, request_hash=?, model=?, input_tokens=?, "
                "output_tokens=?, cache_read_tokens=?, cache_write_tokens=?, cost_usd=?, latency_s=?, cached=?, "
                "error_kind=?, error=?, state=?, reserved_usd=?, usage_estimated=? WHERE id=?",
                (*values, call_id),
            )
            if record.error_kind is None and not record.cached:
                conn.execute(
                    "UPDATE llm_calls SET state='retried', cost_usd=?, input_tokens=?, output_tokens=?, "
                    "cache_read_tokens=?, cache_write_tokens=? WHERE request_hash=? AND state='started' AND id<?",
                    (record.cost_usd, record.input_tokens, record.output_tokens, record.cache_read_tokens,
                     record.cache_write_tokens, record.request_hash, call_id),
                )
            if cache_response is not None:
                _cache(conn, record, cache_response)

    def cached_response(self, request_hash: str) -> str | None:
        """The cached response blob for a request, or ``None`` on a miss."""
        rows = self._query("SELECT response FROM response_cache WHERE request_hash=?", (request_hash,))
        return rows[0]["response"] if rows else None

    def calls(self, **where: str | None) -> list[CallRecord]:
        """Ledger rows, optionally filtered by stage/model/instance_id/trajectory."""
        clauses, params = _where(where)
        rows = self._query(f"SELECT * FROM llm_calls{clauses} ORDER BY id", params)
        return [
            CallRecord(
                stage=row["stage"],
                instance_id=row["instance_id"],
                trajectory=row["trajectory"],
                request_hash=row["request_hash"],
                model=row["model"],
                input_tokens=row["input_tokens"],
                output_tokens=row["output_tokens"],
                cache_read_tokens=row["cache_read_tokens"],
                cache_write_tokens=row["cache_write_tokens"],
                cost_usd=row["cost_usd"],
                latency_s=row["latency_s"],
                cached=bool(row["cached"]),
                error_kind=row["error_kind"],
                error=row["error"],
                ts=row["ts"],
                state="settled" if self._legacy_calls else row["state"],
                reserved_usd=None if self._legacy_calls else row["reserved_usd"],
                # Absent from stores written before it (read-only opens do not migrate).
                usage_estimated="usage_estimated" in row.keys() and bool(row["usage_estimated"]),
            )
            for row in rows
        ]

    def ledger(self, group_by: Sequence[str] = ("stage", "model"), **where: str | None) -> list[LedgerRow]:
        """Spending grouped by ledger columns; cache hits cost nothing and are counted apart.

        A call still ``started`` (its process died or was cancelled with it in
        flight) costs its reserved worst case: spending is never undercounted.
        """
        unknown = set(group_by) - _LEDGER_COLUMNS
        if unknown:
            raise UserError(f"cannot group the ledger by {sorted(unknown)}; choose from {sorted(_LEDGER_COLUMNS)}")
        clauses, params = _where(where)
        columns = ", ".join(group_by) if group_by else "'all'"
        booked, started = ("cost_usd", "0") if self._legacy_calls else (_BOOKED, "state = 'started'")
        sql = (
            f"SELECT {columns}, COUNT(*) AS calls, SUM(cached) AS cached_calls, "
            "SUM(error_kind IS NOT NULL) AS failed_calls, "
            "SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens, "
            "SUM(cache_read_tokens) AS cache_read_tokens, SUM(cache_write_tokens) AS cache_write_tokens, "
            f"COALESCE(SUM({booked}), 0.0) AS cost_usd, "
            f"SUM({booked} IS NULL AND cached = 0 AND error_kind IS NULL) AS unpriced_calls, "
            f"SUM({started}) AS started_calls "
            f"FROM llm_calls{clauses} GROUP BY {columns} ORDER BY {columns}"
        )
        rows = self._query(sql, params)
        width = len(group_by) or 1
        return [
            LedgerRow(
                group=tuple(row[i] for i in range(width)),
                calls=row["calls"],
                cached_calls=row["cached_calls"] or 0,
                failed_calls=row["failed_calls"] or 0,
                input_tokens=row["input_tokens"] or 0,
                output_tokens=row["output_tokens"] or 0,
                cache_read_tokens=row["cache_read_tokens"] or 0,
                cache_write_tokens=row["cache_write_tokens"] or 0,
                cost_usd=row["cost_usd"] or 0.0,
                unpriced_calls=row["unpriced_calls"] or 0,
                started_calls=row["started_calls"] or 0,
            )
            for row in rows
        ]

    def total_cost(self, **where: str | None) -> float:
        rows = self.ledger(group_by=(), **where)
        return rows[0].cost_usd if rows else 0.0

    # --- context stage: relevance decisions and token counts ---------------------

    def put_context_decision(self, decision: ContextDecision) -> None:
        """Record one file's relevance decision (replaces an earlier one for the same key)."""
        self._write(
            "INSERT OR REPLACE INTO context_decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                decision.instance_id,
                decision.path,
                decision.content_hash,
                decision.model,
                decision.prompt_version,
                decision.status,
                None if decision.relevant is None else int(decision.relevant),
                decision.summary,
                decision.tokens,
                decision.detail,
                time.time(),
            ),
        )

    def context_decisions(
        self, instance_id: str, model: str | None = None, prompt_version: str | None = None
    ) -> list[ContextDecision]:
        """Decisions recorded for an instance, optionally for one model and prompt version."""
        sql = "SELECT * FROM context_decisions WHERE instance_id=?"
        params: list[Any] = [instance_id]
        if model is not None:
            sql += " AND model=?"
            params.append(model)
        if prompt_version is not None:
            sql += " AND prompt_version=?"
            params.append(prompt_version)
        rows = self._query(sql + " ORDER BY path", params)
        return [
            ContextDecision(
                instance_id=row["instance_id"],
                path=row["path"],
                content_hash=row["content_hash"],
                model=row["model"],
                prompt_version=row["prompt_version"],
                status=row["status"],
                relevant=None if row["relevant"] is None else bool(row["relevant"]),
                summary=row["summary"],
                tokens=row["tokens"],
                detail=row["detail"],
            )
            for row in rows
        ]

    def token_counts(self, tokenizer: str, blobs: Sequence[str]) -> dict[str, int]:
        """Cached token counts of git blobs (by sha) under ``tokenizer``; misses are absent."""
        found: dict[str, int] = {}
        unique = list(dict.fromkeys(blobs))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._query(
                f"SELECT blob, tokens FROM token_counts WHERE tokenizer=? AND blob IN ({marks})", [tokenizer, *chunk]
            )
            found.update((row["blob"], row["tokens"]) for row in rows)
        return found

    def put_token_counts(self, tokenizer: str, counts: Mapping[str, int]) -> None:
        """Remember token counts of git blobs, so unchanged files are tokenized once per run."""
        if not counts:
            return
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO token_counts VALUES (?, ?, ?)",
                [(tokenizer, blob, tokens) for blob, tokens in counts.items()],
            )

    # --- generic per-stage results ----------------------------------------------

    def put_result(self, instance_id: str, stage: str, key: str, data: Any) -> None:
        """Store a stage's JSON result for an instance (idempotent by key)."""
        self._write(
            "INSERT OR REPLACE INTO stage_results VALUES (?, ?, ?, ?, ?)",
            (instance_id, stage, key, json.dumps(data), time.time()),
        )

    def get_result(self, instance_id: str, stage: str, key: str) -> Any | None:
        rows = self._query(
            "SELECT data FROM stage_results WHERE instance_id=? AND stage=? AND key=?", (instance_id, stage, key)
        )
        return json.loads(rows[0]["data"]) if rows else None

    # --- trajectories -----------------------------------------------------------

    def save_trajectory(self, record: TrajectoryRecord) -> None:
        self._write(
            "INSERT OR REPLACE INTO trajectories VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.trajectory_id,
                record.instance_id,
                record.kind,
                record.index,
                record.status,
                record.failure_kind,
                record.failure,
                record.state,
                time.time(),
            ),
        )

    def save_turn(self, turn: TurnRecord, trajectory: TrajectoryRecord | None = None) -> None:
        """Save a turn (and optionally the trajectory's new summary) atomically."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO turns VALUES (?, ?, ?, ?)",
                (turn.trajectory_id, turn.turn, turn.data, time.time()),
            )
            if trajectory is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO trajectories VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        trajectory.trajectory_id,
                        trajectory.instance_id,
                        trajectory.kind,
                        trajectory.index,
                        trajectory.status,
                        trajectory.failure_kind,
                        trajectory.failure,
                        trajectory.state,
                        time.time(),
                    ),
                )

    def turns(self, trajectory_id: str) -> list[TurnRecord]:
        rows = self._query("SELECT * FROM turns WHERE trajectory_id=? ORDER BY turn", (trajectory_id,))
        return [TurnRecord(row["trajectory_id"], row["turn"], row["data"]) for row in rows]

    def trajectory(self, trajectory_id: str) -> TrajectoryRecord | None:
        rows = self._query("SELECT * FROM trajectories WHERE trajectory_id=?", (trajectory_id,))
        return _trajectory(rows[0]) if rows else None

    def trajectories(self, instance_id: str | None = None, kind: str | None = None) -> list[TrajectoryRecord]:
        clauses, params = _where({"instance_id": instance_id, "kind": kind}, _TRAJECTORY_COLUMNS)
        rows = self._query(f"SELECT * FROM trajectories{clauses} ORDER BY instance_id, kind, idx", params)
        return [_trajectory(row) for row in rows]

    # --- candidates, test matrix, selections ------------------------------------

    def add_candidate(
        self, candidate_id: str, instance_id: str, source: str, patch: str, patch_hash: str, data: dict[str, Any]
    ) -> None:
        self._write(
            "INSERT OR REPLACE INTO candidates VALUES (?, ?, ?, ?, ?, ?, ?)",
            (candidate_id, instance_id, source, patch, patch_hash, json.dumps(data), time.time()),
        )

    def candidates(self, instance_id: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM candidates WHERE instance_id=? ORDER BY candidate_id", (instance_id,))
        return [{**dict(row), "data": json.loads(row["data"])} for row in rows]

    def put_execution(self, execution: TestExecution) -> None:
        self._write(
            "INSERT OR REPLACE INTO test_executions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                execution.env_key,
                execution.patch_hash,
                execution.test_hash,
                execution.attempt,
                execution.exit_code,
                int(execution.timed_out),
                execution.output,
                execution.duration_s,
                time.time(),
            ),
        )

    def get_execution(self, env_key: str, patch_hash: str, test_hash: str, attempt: int = 0) -> TestExecution | None:
        rows = self._query(
            "SELECT * FROM test_executions WHERE env_key=? AND patch_hash=? AND test_hash=? AND attempt=?",
            (env_key, patch_hash, test_hash, attempt),
        )
        if not rows:
            return None
        row = rows[0]
        return TestExecution(
            env_key=row["env_key"],
            patch_hash=row["patch_hash"],
            test_hash=row["test_hash"],
            attempt=row["attempt"],
            exit_code=row["exit_code"],
            output=row["output"],
            duration_s=row["duration_s"],
            timed_out=bool(row["timed_out"]),
        )

    def put_selection(self, instance_id: str, candidate_id: str | None, method: str, data: dict[str, Any]) -> None:
        self._write(
            "INSERT OR REPLACE INTO selections VALUES (?, ?, ?, ?, ?)",
            (instance_id, candidate_id, method, json.dumps(data), time.time()),
        )

    def selection(self, instance_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM selections WHERE instance_id=?", (instance_id,))
        return {**dict(rows[0]), "data": json.loads(rows[0]["data"])} if rows else None

    def selections(self) -> list[dict[str, Any]]:
        """Every recorded selection, by instance id (for exports and reports)."""
        rows = self._query("SELECT * FROM selections ORDER BY instance_id")
        return [{**dict(row), "data": json.loads(row["data"])} for row in rows]


_BOOKED = "(CASE WHEN state = 'started' THEN reserved_usd ELSE cost_usd END)"
_INSERT_CALL = (
    "INSERT INTO llm_calls (ts, stage, instance_id, trajectory, request_hash, model, input_tokens, "
    "output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, latency_s, cached, error_kind, error, "
    "state, reserved_usd, usage_estimated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# Columns added after schema 1 was released: (name, declaration), added to older stores on open.
_ADDED_COLUMNS = {
    "llm_calls": (
        ("state", "TEXT NOT NULL DEFAULT 'settled'"),
        ("reserved_usd", "REAL"),
        # 1: the server sent no usage; the tokens are the offline counter's estimate.
        ("usage_estimated", "INTEGER NOT NULL DEFAULT 0"),
    )
}


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    for table, columns in _ADDED_COLUMNS.items():
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for name, declaration in columns:
            if name not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")


def _call_values(record: CallRecord) -> tuple[Any, ...]:
    return (
        record.ts or time.time(),
        record.stage,
        record.instance_id,
        record.trajectory,
        record.request_hash,
        record.model,
        record.input_tokens,
        record.output_tokens,
        record.cache_read_tokens,
        record.cache_write_tokens,
        record.cost_usd,
        record.latency_s,
        int(record.cached),
        record.error_kind,
        record.error,
        record.state,
        record.reserved_usd,
        int(record.usage_estimated),
    )


def _cache(conn: sqlite3.Connection, record: CallRecord, response: str) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO response_cache VALUES (?, ?, ?, ?)",
        (record.request_hash, record.model, response, time.time()),
    )


def _where(filters: dict[str, str | None], columns: frozenset[str] = _LEDGER_COLUMNS) -> tuple[str, list[Any]]:
    clauses = []
    params: list[Any] = []
    for column, value in filters.items():
        if value is None:
            continue
        if column not in columns:
            raise UserError(f"cannot filter by {column!r}; choose from {', '.join(sorted(columns))}")
        clauses.append(f"{column}=?")
        params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _trajectory(row: sqlite3.Row) -> TrajectoryRecord:
    return TrajectoryRecord(
        trajectory_id=row["trajectory_id"],
        instance_id=row["instance_id"],
        kind=row["kind"],
        index=row["idx"],
        status=row["status"],
        failure_kind=row["failure_kind"],
        failure=row["failure"],
        state=row["state"],
    )
