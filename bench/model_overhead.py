"""What our model layer costs on top of the raw OpenAI SDK.

Drives ``--calls`` chat completions against the loopback fake server (run in a
child process with ``--latency`` seconds of simulated model time, so its CPU is
not counted here) at each ``--concurrency``, twice: straight through
``AsyncOpenAI`` with an ``asyncio.Semaphore``, and through our
:class:`~codemonkeys.llm.gateway.Gateway` -- ``OpenAIModel`` + ``ProviderLimiter``
(in-flight, requests/minute and tokens/minute caps, set high enough not to
bind) + the SDK's retries + a real ``RunStore`` in a temporary directory, with
the response cache on and every request distinct, so each call is a cache miss
that writes a ledger row and a cache entry.

Prints wall time, its ratio to the ideal (calls x latency / concurrency), CPU
milliseconds per call (``time.process_time`` of this process) and the ratios
ours/raw. Targets: ours/raw <= 1.15 in wall time and <= 1.3 in CPU per call.

    python bench/model_overhead.py [--calls 2000] [--latency 0.05] [--concurrency 16 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import openai
from rich.console import Console
from rich.table import Table

from codemonkeys.config import ProviderLimits, ProviderSettings, load_config
from codemonkeys.llm.gateway import Gateway
from codemonkeys.llm.limiter import ProviderLimiter
from codemonkeys.llm.pricing import PriceTable
from codemonkeys.llm.providers.openai import OpenAIModel
from codemonkeys.llm.spec import parse_model_string
from codemonkeys.llm.types import CallTag, ChatRequest, Message
from codemonkeys.store import RunStore
from codemonkeys.testing.fake_server import fake_server_process

MODEL = "gpt-4.1"  # priced in the shipped table, so the ledger computes a cost
FILLER = "Summarize the following function and say whether it is relevant. " * 12
MAX_TOKENS = 64


@dataclass(frozen=True)
class Measure:
    wall_s: float
    cpu_s: float


def prompt(run: str, index: int) -> str:
    return f"[{run} #{index}] {FILLER}"


async def _drive(calls: int, one: Callable[[int], Awaitable[object]]) -> Measure:
    await asyncio.gather(*(one(-1 - i) for i in range(8)))  # warm connections and code paths
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(i) for i in range(calls)))
    return Measure(time.perf_counter() - wall, time.process_time() - cpu)


async def raw_sdk(url: str, calls: int, concurrency: int, run: str) -> Measure:
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x")
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> object:
        async with gate:
            return await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": prompt(run, index)}],
                max_tokens=MAX_TOKENS,
                temperature=0.0,
            )

    try:
        return await _drive(calls, one)
    finally:
        await client.close()


async def our_layer(url: str, calls: int, concurrency: int, run: str, store_dir: Path) -> Measure:
    limits = ProviderLimits(
        max_in_flight=concurrency, requests_per_minute=10**7, tokens_per_minute=10**10
    )
    settings = ProviderSettings(limits=limits)
    model = OpenAIModel(parse_model_string(f"openai-compatible:{MODEL}@{url}/v1"), settings, None)
    store = RunStore.open(store_dir)
    prices = PriceTable(load_config().pricing)
    gateway = Gateway(model, store, prices, limiter=ProviderLimiter(limits), use_cache=True)
    tag = CallTag(stage="bench", instance_id="bench__instance-1")

    async def one(index: int) -> object:
        request = ChatRequest(
            messages=(Message("user", prompt(run, index)),), max_tokens=MAX_TOKENS
        )
        return await gateway.complete(request, tag)

    try:
        return await _drive(calls, one)
    finally:
        await model.aclose()
        rows = store.ledger(group_by=("stage",))
        store.close()
        expected = calls + 8
        if not rows or rows[0].calls != expected or rows[0].cached_calls or rows[0].failed_calls:
            raise SystemExit(f"ledger does not hold {expected} fresh calls: {rows}")


@dataclass(frozen=True)
class Cell:
    """One concurrency level: medians of each path, and medians of the paired ratios ours/raw.

    Raw and ours run back to back in each repeat, so a ratio compares runs made
    under the same machine load; the median of those ratios resists noise from
    other processes better than the ratio of two medians.
    """

    concurrency: int
    raw: Measure
    ours: Measure
    wall_ratio: float
    cpu_ratio: float


async def bench(url: str, args: argparse.Namespace) -> list[Cell]:
    cells = []
    with tempfile.TemporaryDirectory(prefix="cm-bench-") as tmp:
        for concurrency in args.concurrency:
            raws, ours = [], []
            for attempt in range(args.repeat):
                run = f"c{concurrency}-r{attempt}"
                raws.append(await raw_sdk(url, args.calls, concurrency, run))
                ours.append(await our_layer(url, args.calls, concurrency, run, Path(tmp) / run))
            cells.append(
                Cell(
                    concurrency,
                    _median(raws),
                    _median(ours),
                    statistics.median(o.wall_s / r.wall_s for r, o in zip(raws, ours, strict=True)),
                    statistics.median(o.cpu_s / r.cpu_s for r, o in zip(raws, ours, strict=True)),
                )
            )
    return cells


def _median(measures: list[Measure]) -> Measure:
    return Measure(
        statistics.median(m.wall_s for m in measures), statistics.median(m.cpu_s for m in measures)
    )


def report(cells: list[Cell], args: argparse.Namespace) -> Table:
    title = f"{args.calls} calls, {args.latency * 1000:.0f} ms simulated latency, median of {args.repeat}"
    table = Table(title=title)
    columns = (
        "concurrency",
        "path",
        "wall s",
        "x ideal",
        "CPU ms/call",
        "ours/raw wall",
        "ours/raw CPU",
    )
    for column in columns:
        table.add_column(column, justify="right")
    for cell in cells:
        ideal = args.calls * args.latency / cell.concurrency
        for label, measure in (("raw SDK", cell.raw), ("ours", cell.ours)):
            is_ours = measure is cell.ours
            table.add_row(
                str(cell.concurrency),
                label,
                f"{measure.wall_s:.2f}",
                f"{measure.wall_s / ideal:.2f}",
                f"{measure.cpu_s / args.calls * 1000:.2f}",
                f"{cell.wall_ratio:.3f}" if is_ours else "",
                f"{cell.cpu_ratio:.3f}" if is_ours else "",
            )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; the median is shown")
    args = parser.parse_args()
    with fake_server_process(args.latency) as url:
        cells = asyncio.run(bench(url, args))
    Console(width=120).print(report(cells, args))


if __name__ == "__main__":
    main()
