"""What reaching the store through the driver's actor costs a worker, per call.

In ``executor: ray`` every store call of a worker is a round trip to the
RunState actor on the driver's node. This times a read (``cached_response``)
and a write (``save_turn``) made directly on a RunStore, through the
in-process transport, and from a Ray task through the actor (local Ray, so
the network part of a real cluster is not included), plus a budget
reserve+settle pair. Prints microseconds per call.

    python bench/ray_store.py [--calls N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from rich.console import Console
from rich.table import Table

from codemonkeys.config import load_config
from codemonkeys.llm.types import CallTag
from codemonkeys.pipeline.ray_executor import _sync_transport
from codemonkeys.pipeline.remote import RemoteBudget, RemoteStore, RunState, local_transport
from codemonkeys.store.records import TrajectoryRecord, TurnRecord


def _time(calls: int, fn: Callable[[int], Any]) -> float:
    start = time.perf_counter()
    for i in range(calls):
        fn(i)
    return (time.perf_counter() - start) / calls * 1e6


def _suite(store: Any, budget: Any, calls: int) -> dict[str, float]:
    record = TrajectoryRecord("b/editing/0", "b", "editing", 0, "running")
    tag = CallTag("editing", "b")
    return {
        "read (cached_response)": _time(calls, lambda i: store.cached_response(f"h{i}")),
        "write (save_turn)": _time(calls, lambda i: store.save_turn(TurnRecord("b/editing/0", i, "{}"), record)),
        "budget reserve+settle": _time(calls, lambda i: budget.settle(budget.reserve(tag, 0.0), 0.0)),
    }


@ray.remote
def _in_worker(state: Any, calls: int) -> dict[str, float]:
    call = _sync_transport(state)
    return _suite(RemoteStore(call), RemoteBudget(call, "b"), calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    config = load_config(None, [])
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        direct = RunState(config, Path(tmp) / "direct", [])
        results["RunStore, same process"] = _suite(direct.store, direct.budget, args.calls)
        results["RemoteStore, in-process transport"] = _suite(
            RemoteStore(local_transport(direct)), RemoteBudget(local_transport(direct), "b"), args.calls
        )
        direct.close()
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
        try:
            state: Any = ray.remote(RunState).options(num_cpus=0, max_concurrency=16).remote(config, Path(tmp) / "actor", [])
            results["RemoteStore, Ray task -> actor"] = ray.get(_in_worker.remote(state, args.calls))
            ray.get(state.close.remote())
        finally:
            ray.shutdown()
    table = Table(title=f"store calls, microseconds each ({args.calls} calls)")
    table.add_column("path")
    operations = list(next(iter(results.values())))
    for operation in operations:
        table.add_column(operation, justify="right")
    for path, row in results.items():
        table.add_row(path, *(f"{row[operation]:,.0f}" for operation in operations))
    Console().print(table)


if __name__ == "__main__":
    main()
