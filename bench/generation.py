"""Generation at scale: wall time against its critical-path bound, and the prompt-cache share.

Runs ``--instances`` instances x ``--trajectories`` testing-then-editing
trajectories through the real stage (:func:`codemonkeys.generation.stage.generate`),
the real Anthropic SDK (``AnthropicModel`` behind the ``ModelHub``'s gateways and
shared provider limiter) against the loopback fake server (a child process,
``--latency`` seconds per answer, prompt caching simulated with Sonnet's 1024-token
minimum), a real ``RunStore`` and real Docker sandboxes of the fixture repository
(``calc.py``), one pool per instance as the pipeline makes them.

The fake server plays both models from the request alone: the testing model writes a
short reproduction test (tagged with a random variant, so every trajectory's test and
drafts are distinct cells that really run), then ``<done/>``; the editing model makes
``--turns - 1`` edits that each apply (a comment line moved forward a step; the last
also sets the flag the test checks, so it passes), then ``<done/>``. The editing system
prompt carries ~``--context-tokens`` of real source (standard-library modules), as a
packed context does.

The bound is the largest of four lower limits on the wall time; no schedule under the
configured concurrency can beat any of them (L = the server latency, d = a run's
sandbox time as recorded in ``test_executions``: patch, test, reset):

(a) the longest chain of one instance: trajectory 0's testing call alone (the
    warm-up), then for each trajectory its calls x L plus its own sandbox runs, its
    first editing call no earlier than the end of trajectory 0's (the editing warm-up);
(b) total sandbox time / sandbox slots (``min(instances, max_concurrent_instances) x
    pool_size`` sandboxes exist at once);
(c) total model latency (calls x L) / ``max_in_flight``;
(d) instance slots: instances run ``max_concurrent_instances`` at a time, each for at
    least its chain, so the makespan is at least sum(chains) / M and, with the chains
    sorted longest first, (k+1) x chain[k M] for every k (k M + 1 chains on M slots
    put k + 1 of them on one slot).

Container starts and stops are sandbox work outside (b); the table shows how many.
The cache-read share counts, for every call that is not trajectory 0's first call of
a phase, the tokens of the shared system prompt, and the part of them billed as cache
reads (``min(cache_read, system tokens)``: reads are prefixes, and the system prompt
comes first). Targets: wall / bound <= 1.20 and a cache-read share >= 0.80.

    python bench/generation.py [--instances 10] [--trajectories 10] [--turns 8] [--latency 0.2]
        [--max-concurrent-instances M] [--pool-size P] [--max-in-flight F]   (defaults: the config's)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import sqlite3
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from codemonkeys.config import Config, ModelSettings, load_config
from codemonkeys.execution import ORIGINAL, SandboxPool, TestRunner, test_hash
from codemonkeys.execution.sources import SandboxSources
from codemonkeys.generation.stage import ContextFile, GenerationInputs, generate
from codemonkeys.generation.state import TrajectoryState
from codemonkeys.generation.trajectory import TrajectoryDeps
from codemonkeys.llm.registry import ModelHub
from codemonkeys.prompting import Prompt
from codemonkeys.sandbox import fixture_repo
from codemonkeys.sandbox.base import EnvironmentRef
from codemonkeys.store import RunStore
from codemonkeys.testing import fake_wire
from codemonkeys.testing.fake_server import FakeLLMServer

MODEL = "claude-sonnet-4-5"
CONTEXT_MODULES = ("heapq", "textwrap", "calendar", "fractions", "shlex", "string", "queue", "numbers", "glob")
TESTING_MARK = "Before anybody fixes the GitHub issue"
EDITING_MARK = "Fix the GitHub issue below by editing the repository"
DOCSTRING = '"""Arithmetic for the sandbox tests."""\n'


# --- the workload: issues, context, and the models' answers -----------------------------


def issue_text(function: str, index: int) -> str:
    """A distinct issue per instance, about one function of the fixture's calc.py."""
    return (
        f"`calc.{function}(a, b)` gives no way to tell whether the known problem report #{index} "
        f"about it has been dealt with.\n\nDownstream code checks `calc.ISSUE_{function.upper()}_FIXED` "
        f"before relying on `calc.{function}`; the flag is missing, so every caller takes the slow "
        "path. Please add the flag once the behaviour is right, and leave a note in the module.\n"
    )


def context_files(budget_tokens: int) -> list[ContextFile]:
    """calc.py, then standard-library modules as the rest of a packed context, up to the budget."""
    files = [ContextFile("calc.py", fixture_repo.FILES["calc.py"])]
    used = fake_wire.block_tokens(files[0].content)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in CONTEXT_MODULES:
        text = (stdlib / f"{name}.py").read_text()
        tokens = fake_wire.block_tokens(text)
        if used + tokens > budget_tokens:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[: max(1, len(lines) * (budget_tokens - used) // tokens)])
            tokens = fake_wire.block_tokens(text)
        files.append(ContextFile(f"lib/{name}.py", text))
        used += tokens
        if used >= budget_tokens * 0.98:
            break
    return files


def test_answer(function: str, variant: str) -> str:
    return (
        "<test>\n```python\nimport sys\n\nimport calc\n\n"
        f"# reproduction, variant {variant}\n"
        f'print("calc.{function}(2, 3) =", calc.{function}(2, 3))\n'
        f'fixed = getattr(calc, "ISSUE_{function.upper()}_FIXED", False)\n'
        'print("fixed:", fixed)\nsys.exit(0 if fixed else 2)\n```\n</test>\n'
    )


def edit_answer(function: str, variant: str, step: int, last: bool) -> str:
    """Step 1 adds a note under the docstring; later steps move it on; the last sets the flag."""
    note = f"# {function}: variant {variant}, step {{}}\n"
    search = DOCSTRING if step == 1 else note.format(step - 1)
    replace = (DOCSTRING if step == 1 else "") + note.format(step)
    if last:
        replace += f"ISSUE_{function.upper()}_FIXED = True\n"
    return f"Step {step}.\n<edit>\n<path>calc.py</path>\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n</edit>\n"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def make_responder(turns: int):  # type: ignore[no-untyped-def]
    """Both models, decided from the request (runs in the server process)."""

    def responder(body: dict[str, Any]) -> str:
        system = _text(body.get("system") or [])
        messages = body.get("messages", [])
        step = 1 + sum(1 for message in messages if message.get("role") == "assistant")
        issue = system[system.rindex("<issue>") :]
        function = re.search(r"`calc\.(\w+)\(", issue).group(1)  # type: ignore[union-attr]
        if TESTING_MARK in system:
            return test_answer(function, uuid.uuid4().hex[:12]) if step == 1 else "<done/>\n"
        if EDITING_MARK not in system:
            raise ValueError("neither a testing nor an editing request")
        variant = re.search(r"variant ([0-9a-f]{12})", _text(messages[0]["content"])).group(1)  # type: ignore[union-attr]
        if step >= turns:
            return "<done/>\n"
        return edit_answer(function, variant, step, last=step == turns - 1)

    return responder


def serve(args: argparse.Namespace) -> None:
    """The ``--serve`` child: the fake server with the bench's responder until SIGTERM."""
    server = FakeLLMServer(
        make_responder(args.turns), latency_s=args.latency, record=False, min_cache_tokens=args.min_cache_tokens
    )

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    print(server.url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


@contextlib.contextmanager
def server_process(args: argparse.Namespace) -> Iterator[str]:
    command = [
        sys.executable, __file__, "--serve", "--turns", str(args.turns),
        "--latency", str(args.latency), "--min-cache-tokens", str(args.min_cache_tokens),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("http://"):
            raise SystemExit(f"the fake server did not start (said {line!r})")
        yield line
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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

    async def __aenter__(self) -> _TimedSandbox:
        start = time.perf_counter()
        await self._inner.__aenter__()
        self._owner.starts.append(time.perf_counter() - start)
        return self

    async def __aexit__(self, *exc: Any) -> None:
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
        setattr(config.models, stage, ModelSettings(model=f"anthropic:{MODEL}@{url}", temperature=0.5))
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

    async def one(index: int) -> InstanceRun:
        iid = f"bench__calc-{index}"
        function = functions[index % len(functions)]
        async with gate:
            start = time.perf_counter()
            async with SandboxPool(factory, env, config.sandbox.pool_size) as pool:
                runner = TestRunner(pool, store, timeout_s=config.generation.test_timeout_s)
                sources = SandboxSources(pool)
                common: dict[str, Any] = dict(store=store, runner=runner, sources=sources, prompt=prompt, config=config.generation)
                testing = TrajectoryDeps(chat=hub.gateway("testing", iid), model=config.models.testing, **common)
                editing = TrajectoryDeps(chat=hub.gateway("editing", iid), model=config.models.editing, **common)
                inputs = GenerationInputs(iid, issue_text(function, index), files)
                result = await generate(testing, editing, store, inputs, args.trajectories)
            return InstanceRun(iid, time.perf_counter() - start, len(result.candidates), result.failures, pool.started)

    try:
        start = time.perf_counter()
        runs = await asyncio.gather(*(one(i) for i in range(args.instances)))
        return time.perf_counter() - start, list(runs)
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

    @property
    def value(self) -> float:
        return max(self.chain, self.sandbox, self.llm, self.instances)


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
    for call in store.calls():
        calls[call.trajectory or ""] += 1
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
    waves = max((k + 1) * chains[k * slots] for k in range(0, (len(chains) - 1) // slots + 1)) if chains else 0.0
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
    )


@dataclass(frozen=True)
class CacheShare:
    shared: int
    shared_read: int
    by_phase: dict[str, tuple[int, int]]
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
    phase: dict[str, list[int]] = defaultdict(lambda: [0, 0])
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
    shared = sum(p[0] for p in phase.values())
    shared_read = sum(p[1] for p in phase.values())
    return CacheShare(shared, shared_read, {k: (v[0], v[1]) for k, v in phase.items()}, uncached, written, read)


def report(
    args: argparse.Namespace, config: Config, wall: float, runs: list[InstanceRun], bound: Bound,
    cache: CacheShare, context: int, factory: TimedFactory,
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
    rows = [
        ("wall time", f"{wall:.2f} s", ""),
        ("(a) longest instance chain", f"{bound.chain:.2f} s", "warm-ups + calls x latency + own sandbox runs"),
        ("(b) sandbox time / slots", f"{bound.sandbox:.2f} s", f"{bound.sandbox_total:.1f} s: {bound.runs} runs "
         f"(mean {bound.run_mean:.3f} s) + container starts/stops / {min(args.instances, config.max_concurrent_instances) * config.sandbox.pool_size} slots"),
        ("(c) model latency / in flight", f"{bound.llm:.2f} s", f"{bound.calls} calls x {args.latency:.2f} s / {limits.max_in_flight}"),
        ("(d) instance slots", f"{bound.instances:.2f} s", f"chains on {min(args.instances, config.max_concurrent_instances)} instance slots"),
        ("bound = max(a, b, c, d)", f"{bound.value:.2f} s", ""),
        ("wall / bound", f"{wall / bound.value:.3f}", "target <= 1.20"),
        ("mean instance time", f"{sum(r.seconds for r in runs) / len(runs):.2f} s", "from its slot to its pool closed"),
        ("containers", f"{started}", f"start {_mean(factory.starts):.2f} s, stop {_mean(factory.stops):.2f} s (mean)"),
        ("cache-read share of shared prefix", f"{cache.share:.3f}", "target >= 0.80; fan-out firsts + every later call"),
    ]
    for kind, (shared, hit) in sorted(cache.by_phase.items()):
        rows.append((f"  {kind} phase", f"{hit / shared if shared else 0:.3f}", f"{hit:,} of {shared:,} shared tokens read"))
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
    with server_process(args) as url, tempfile.TemporaryDirectory(prefix="cm-bench-gen-") as tmp:
        config = bench_config(args, url)
        store = RunStore.open(Path(tmp))
        factory = TimedFactory(DockerSandboxFactory(config.sandbox))
        try:
            wall, runs = asyncio.run(run(args, config, store, factory))
            failures = {k: v for r in runs for k, v in r.failures.items()}
            for tid, reason in list(failures.items())[:10]:
                console.print(f"[red]{tid}[/red]: {reason}")
            bound = critical_path(store, config, args.latency, args.instances, factory)
            cache = cache_share(store)
            context = sum(fake_wire.block_tokens(f.content) for f in context_files(args.context_tokens))
            console.print(report(args, config, wall, runs, bound, cache, context, factory))
            console.print(f"candidates: {sum(r.candidates for r in runs)}, failed trajectories: {len(failures)}")
        finally:
            store.close()
            factory.inner.close()
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
