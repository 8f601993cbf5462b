"""Generation at scale: wall time against its critical-path bound, and the prompt-cache share.

Runs ``--instances`` instances x ``--trajectories`` testing-then-editing
trajectories through the real stage (:func:`codemonkeys.generation.stage.generate`),
the real Anthropic SDK (``AnthropicModel`` behind the ``ModelHub``'s gateways and
shared provider limiter) against the loopback fake server (a child process,
``--latency`` seconds per answer, prompt caching simulated with Sonnet's 1024-token
minimum), a real ``RunStore`` and real Docker sandboxes of the fixture repository
(``calc.py``), one pool per instance and at most ``max_concurrent_instances``
instances at once, as the pipeline runs them. Each trajectory writes a test, then
makes ``--turns - 1`` edits and answers ``<done/>``; every test and draft is distinct,
so every cell really runs. The editing system prompt carries ~``--context-tokens`` of
real source, as a packed context does. The workload is in ``generation_workload.py``.

The bound is the largest of four lower limits on the wall time; no schedule under the
configured concurrency beats any of them. L is the server latency; a run's sandbox
time d is what ``test_executions`` records (patch, test and reset: the time the run
held its sandbox); container starts and stops are timed by wrapping the factory.

(a) the longest chain of one instance: a container start, trajectory 0's testing call
    alone (the warm-up), then for each trajectory its calls x L plus its own runs' d,
    its first editing call no earlier than the end of trajectory 0's (the editing
    warm-up); then the pool's containers stop before the instance's slot frees;
(b) total sandbox time (runs, container starts and stops) / sandbox slots
    (``min(instances, max_concurrent_instances) x pool_size`` sandboxes exist at once);
(c) total model latency (calls x L) / ``max_in_flight``;
(d) instance slots: M = ``min(instances, max_concurrent_instances)`` instances run at
    a time, each for at least its chain, so the makespan is at least sum(chains) / M
    and, with the chains sorted longest first, (k+1) x chain[k M] for every k (k M + 1
    chains on M slots put k + 1 of them on one slot).

Sandbox times are measured under the run's own load, so on a small machine where
Docker saturates the CPU, (b) binds and wall / bound says how well the stage keeps
the sandbox slots busy. The cache-read share counts, for every call that is not
trajectory 0's first call of a phase, the tokens of the shared system prompt, and the
part of them billed as cache reads (``min(cache_read, system tokens)``: reads are
prefixes, and the system prompt comes first). Targets: wall / bound <= 1.20 and a
cache-read share >= 0.80.

    python bench/generation.py [--instances 10] [--trajectories 10] [--turns 8] [--latency 0.2]
        [--max-concurrent-instances M] [--pool-size P] [--max-in-flight F]   (defaults: the config's)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from generation_workload import context_files, issue_text, serve, server_process
from rich.console import Console
from rich.table import Table

from codemonkeys.config import Config, ModelSettings, load_config
from codemonkeys.execution import ORIGINAL, SandboxPool, TestRunner, test_hash
from codemonkeys.execution.sources import SandboxSources
from codemonkeys.generation.stage import GenerationInputs, generate
from codemonkeys.generation.state import TrajectoryState
from codemonkeys.generation.trajectory import TrajectoryDeps
from codemonkeys.llm.registry import ModelHub
from codemonkeys.prompting import Prompt
from codemonkeys.sandbox import fixture_repo
from codemonkeys.sandbox.base import EnvironmentRef
from codemonkeys.store import RunStore
from codemonkeys.testing import fake_wire

MODEL = "claude-sonnet-4-6"


# --- the run ------------------------------------------------------------------------------


class TimedFactory:
    """A sandbox factory that times container starts and stops: sandbox work the store does not see."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.starts: list[float] = []
        self.stops: list[float] = []

    def sandbox(self, env: EnvironmentRef) -> _TimedSandbox:
        return _TimedSandbox(self, self.inner.sandbox(env))


class _TimedSandbox:
    def __init__(self, owner: TimedFactory, inner: Any) -> None:
        self._owner = owner
        self._inner = inner

    async def __aenter__(self) -> Self:
        start = time.perf_counter()
        await self._inner.__aenter__()
        self._owner.starts.append(time.perf_counter() - start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        start = time.perf_counter()
        try:
            await self._inner.__aexit__(*exc)
        finally:
            self._owner.stops.append(time.perf_counter() - start)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def bench_config(args: argparse.Namespace, url: str) -> Config:
    config = load_config()
    for stage in ("testing", "editing"):
        settings: ModelSettings = getattr(config.models, stage)
        setattr(config.models, stage, settings.model_copy(update={"model": f"anthropic:{MODEL}@{url}"}))
    anthropic = config.providers["anthropic"]
    anthropic.max_retries, anthropic.timeout_s = 2, 120.0
    if args.max_in_flight:
        anthropic.limits.max_in_flight = args.max_in_flight
    if args.pool_size:
        config.sandbox.pool_size = args.pool_size
    if args.max_concurrent_instances:
        config.max_concurrent_instances = args.max_concurrent_instances
    config.generation.trajectories = args.trajectories
    config.generation.max_iterations = args.turns
    config.generation.test_timeout_s = 60
    return config


@dataclass
class InstanceRun:
    instance_id: str
    began: float  # seconds after the run began
    seconds: float
    candidates: int
    failures: dict[str, str]
    started: int


async def run(
    args: argparse.Namespace, config: Config, store: RunStore, factory: TimedFactory
) -> tuple[float, list[InstanceRun]]:
    from codemonkeys.sandbox.baseimage import ensure_test_image

    client = factory.inner.client
    image = fixture_repo.ensure_fixture_image(client, ensure_test_image(client))
    env = EnvironmentRef(key=f"bench-{image.rsplit(':', 1)[1]}", image=image, python="python3")
    hub = ModelHub(config, store, {"anthropic": "bench-key"})
    prompt, files = Prompt("generation.j2"), context_files(args.context_tokens)
    functions = list(fixture_repo.FUNCTIONS)
    gate = asyncio.Semaphore(config.max_concurrent_instances)
    for stage in ("testing", "editing"):
        hub.gateway(stage)  # shared by all instances; made here so importing the SDK is not timed
    began = time.perf_counter()

    async def one(index: int) -> InstanceRun:
        iid = f"bench__calc-{index}"
        function = functions[index % len(functions)]
        async with gate:
            start = time.perf_counter()
            async with SandboxPool(factory, env, config.sandbox.pool_size) as pool:
                runner = TestRunner(pool, store, timeout_s=config.generation.test_timeout_s)
                sources = SandboxSources(pool)
                common: dict[str, Any] = {
                    "store": store, "runner": runner, "sources": sources, "prompt": prompt, "config": config.generation,
                }
                testing = TrajectoryDeps(chat=hub.gateway("testing", iid), model=config.models.testing, **common)
                editing = TrajectoryDeps(chat=hub.gateway("editing", iid), model=config.models.editing, **common)
                inputs = GenerationInputs(iid, issue_text(function, index), files)
                result = await generate(testing, editing, store, inputs, args.trajectories)
            seconds = time.perf_counter() - start
            return InstanceRun(iid, start - began, seconds, len(result.candidates), result.failures, pool.started)

    try:
        runs = await asyncio.gather(*(one(i) for i in range(args.instances)))
        return time.perf_counter() - began, list(runs)
    finally:
        await hub.aclose()


# --- the analysis ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Bound:
    chain: float
    sandbox: float
    llm: float
    instances: float
    sandbox_total: float
    run_mean: float
    runs: int
    calls: int
    call_mean: float

    @property
    def value(self) -> float:
        return max(self.chain, self.sandbox, self.llm, self.instances)


def _idle_slot_time(runs: list[InstanceRun], slots: int, wall: float) -> float:
    """How long fewer than ``slots`` instances were running (a tail of instances with nobody left to start)."""
    events = sorted([(r.began, 1) for r in runs] + [(r.began + r.seconds, -1) for r in runs])
    idle, running, last = 0.0, 0, 0.0
    for at, change in events:
        if running < slots:
            idle += at - last
        running, last = running + change, at
    return idle + (wall - last if running < slots else 0.0)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _states(store: RunStore) -> dict[str, TrajectoryState]:
    return {r.trajectory_id: TrajectoryState.model_validate_json(r.state) for r in store.trajectories()}


def critical_path(store: RunStore, config: Config, latency: float, instances: int, factory: TimedFactory) -> Bound:
    """The four lower limits of the module docstring, from the store and the container timings."""
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        rows = db.execute("SELECT patch_hash, test_hash, duration_s FROM test_executions").fetchall()
    original: dict[str, float] = {}
    edited: dict[str, float] = defaultdict(float)
    for patch, test, duration in rows:
        if patch == ORIGINAL:
            original[test] = duration
        else:
            edited[test] += duration
    calls: dict[str, int] = defaultdict(int)
    latencies = []
    for call in store.calls():
        calls[call.trajectory or ""] += 1
        latencies.append(call.latency_s)
    states = _states(store)
    by_instance: dict[str, dict[int, tuple[TrajectoryState, TrajectoryState | None]]] = defaultdict(dict)
    for state in states.values():
        if state.kind == "testing":
            by_instance[state.instance_id][state.index] = (state, states.get(state.trajectory_id.replace("/testing/", "/editing/")))
    start_s = sum(factory.starts) / len(factory.starts) if factory.starts else 0.0
    stop_s = sum(factory.stops) / len(factory.stops) if factory.stops else 0.0
    chains = []
    for pipelines in by_instance.values():
        ends, tested = {}, {}
        for index, (test_state, _) in pipelines.items():
            # Trajectory 0's first call goes alone; the first run waits for a container.
            start = (latency if index > 0 else 0.0) + start_s
            t_hash = test_hash(test_state.test or "")
            tested[index] = start + calls[test_state.trajectory_id] * latency + original.get(t_hash, 0.0)
        warm_end = tested.get(0, 0.0) + latency
        for index, (test_state, edit_state) in pipelines.items():
            if edit_state is None:
                ends[index] = tested[index]
                continue
            first = tested[index] if index == 0 else max(tested[index], warm_end)
            own = edited.get(test_hash(edit_state.test or ""), 0.0)
            ends[index] = first + calls[edit_state.trajectory_id] * latency + own
        chains.append(max(ends.values()) + stop_s)  # the pool's sandboxes stop before the slot frees
    chains.sort(reverse=True)
    slots = min(instances, config.max_concurrent_instances)
    waves = max((k + 1) * chains[k * slots] for k in range((len(chains) - 1) // slots + 1)) if chains else 0.0
    total_sandbox = sum(duration for _, _, duration in rows) + sum(factory.starts) + sum(factory.stops)
    n_calls = sum(calls.values())
    return Bound(
        chain=chains[0] if chains else 0.0,
        sandbox=total_sandbox / (slots * config.sandbox.pool_size),
        llm=n_calls * latency / config.providers["anthropic"].limits.max_in_flight,
        instances=max(waves, sum(chains) / slots),
        sandbox_total=total_sandbox,
        run_mean=_mean([duration for _, _, duration in rows]),
        runs=len(rows),
        calls=n_calls,
        call_mean=_mean(latencies),
    )


@dataclass(frozen=True)
class CacheShare:
    shared: int
    shared_read: int
    by_phase: dict[str, tuple[int, int, int]]  # shared tokens, read, largest system prompt
    uncached: int
    written: int
    read: int

    @property
    def share(self) -> float:
        return self.shared_read / self.shared if self.shared else 0.0


def cache_share(store: RunStore) -> CacheShare:
    """Of the shared system-prompt tokens of every call but the warm-ups, the part read from the cache."""
    states = _states(store)
    system_tokens = {tid: fake_wire.block_tokens(state.system) for tid, state in states.items()}
    seen: set[str] = set()
    phase: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    uncached = written = read = 0
    for call in sorted(store.calls(), key=lambda c: c.ts):
        uncached, written, read = uncached + call.input_tokens, written + call.cache_write_tokens, read + call.cache_read_tokens
        tid = call.trajectory or ""
        first = tid not in seen
        seen.add(tid)
        state = states[tid]
        if first and state.index == 0:
            continue  # the warm-up call writes the shared prefix for the others
        tokens = system_tokens[tid]
        phase[state.kind][0] += tokens
        phase[state.kind][1] += min(call.cache_read_tokens, tokens)
        phase[state.kind][2] = max(phase[state.kind][2], tokens)
    shared = sum(p[0] for p in phase.values())
    shared_read = sum(p[1] for p in phase.values())
    return CacheShare(shared, shared_read, {k: (v[0], v[1], v[2]) for k, v in phase.items()}, uncached, written, read)


def report(
    args: argparse.Namespace, config: Config, wall: float, runs: list[InstanceRun], bound: Bound,
    cache: CacheShare, context: int, factory: TimedFactory, load: tuple[float, float], cpu: float,
) -> Table:
    limits = config.providers["anthropic"].limits
    title = (
        f"{args.instances} instances x {args.trajectories} trajectories x {args.turns} editing turns, "
        f"{args.latency * 1000:.0f} ms latency, context {context} tokens; max_concurrent_instances="
        f"{config.max_concurrent_instances}, pool_size={config.sandbox.pool_size}, max_in_flight={limits.max_in_flight}"
    )
    table = Table(title=title, show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("note")
    started = sum(r.started for r in runs)
    slots = min(args.instances, config.max_concurrent_instances)
    rows = [
        ("wall time", f"{wall:.2f} s", ""),
        ("(a) longest instance chain", f"{bound.chain:.2f} s", "warm-ups + calls x latency + own sandbox runs"),
        ("(b) sandbox time / slots", f"{bound.sandbox:.2f} s", (
            f"{bound.sandbox_total:.1f} s: {bound.runs} runs (mean {bound.run_mean:.3f} s) + container starts/stops "
            f"/ {slots * config.sandbox.pool_size} slots"
        )),
        ("(c) model latency / in flight", f"{bound.llm:.2f} s", (
            f"{bound.calls} calls x {args.latency:.2f} s / {limits.max_in_flight}; "
            f"a call took {bound.call_mean:.3f} s on average, as the gateway measured it"
        )),
        ("(d) instance slots", f"{bound.instances:.2f} s", f"chains on {slots} instance slots"),
        ("bound = max(a, b, c, d)", f"{bound.value:.2f} s", ""),
        ("wall / bound", f"{wall / bound.value:.3f}", "target <= 1.20"),
        ("sandbox throughput", f"{bound.runs / wall:.2f} runs/s", f"load average {load[0]:.1f} before, {load[1]:.1f} after"),
        ("this process's CPU", f"{cpu:.1f} s", "SDK, gateway, store, stage, Docker client"),
        ("mean instance time", f"{sum(r.seconds for r in runs) / len(runs):.2f} s", "from its slot to its pool closed"),
        ("time with idle instance slots", f"{_idle_slot_time(runs, slots, wall):.2f} s", (
            f"fewer than {slots} instances running (their sandbox slots idle); the last began at "
            f"{max(r.began for r in runs):.1f} s"
        )),
        ("containers", f"{started}", f"start {_mean(factory.starts):.2f} s, stop {_mean(factory.stops):.2f} s (mean)"),
        ("cache-read share of shared prefix", f"{cache.share:.3f}", "target >= 0.80; fan-out firsts + every later call"),
    ]
    for kind, (shared, hit, largest) in sorted(cache.by_phase.items()):
        small = f"; its system prompt ({largest} tokens) is below the {args.min_cache_tokens}-token minimum" if largest < args.min_cache_tokens else ""
        rows.append((f"  {kind} phase", f"{hit / shared if shared else 0:.3f}", f"{hit:,} of {shared:,} shared tokens read{small}"))
    total = cache.uncached + cache.written + cache.read or 1
    rows.append(("prompt tokens: input / write / read", f"{cache.uncached / total:.3f} / {cache.written / total:.3f} / {cache.read / total:.3f}", f"{total:,} prompt tokens"))
    for row in rows:
        table.add_row(*row)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--trajectories", type=int, default=10)
    parser.add_argument("--turns", type=int, default=8, help="editing calls per trajectory (the last is <done/>)")
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--context-tokens", type=int, default=25_000)
    parser.add_argument("--min-cache-tokens", type=int, default=1024, help="the provider's minimum cacheable prefix")
    parser.add_argument("--max-concurrent-instances", type=int, default=None)
    parser.add_argument("--pool-size", type=int, default=None)
    parser.add_argument("--max-in-flight", type=int, default=None)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    from codemonkeys.sandbox.docker_backend import DockerSandboxFactory

    console = Console(width=160)
    with server_process(args, __file__) as url, tempfile.TemporaryDirectory(prefix="cm-bench-gen-") as tmp:
        config = bench_config(args, url)
        store = RunStore.open(Path(tmp))
        factory = TimedFactory(DockerSandboxFactory(config.sandbox))
        try:
            load_before, cpu_before = os.getloadavg()[0], time.process_time()
            wall, runs = asyncio.run(run(args, config, store, factory))
            load, cpu = (load_before, os.getloadavg()[0]), time.process_time() - cpu_before
            failures = {k: v for r in runs for k, v in r.failures.items()}
            for tid, reason in list(failures.items())[:10]:
                console.print(f"[red]{tid}[/red]: {reason}")
            bound = critical_path(store, config, args.latency, args.instances, factory)
            cache = cache_share(store)
            context = sum(fake_wire.block_tokens(f.content) for f in context_files(args.context_tokens))
            console.print(report(args, config, wall, runs, bound, cache, context, factory, load, cpu))
            console.print(f"candidates: {sum(r.candidates for r in runs)}, failed trajectories: {len(failures)}")
        finally:
            store.close()
            factory.inner.close()
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
