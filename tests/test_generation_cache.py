"""Prompt-cache warm-up of the generation stage, end to end through the real Anthropic SDK.

One instance, four trajectories, three editing turns: ``AnthropicModel`` behind a
``Gateway`` and a ``RunStore``, against the loopback server, which simulates
Anthropic's breakpoint caching. In each phase trajectory 0's first call must be
the only first call that writes the shared system prompt to the cache, and the
other three first calls must read it -- which holds only if they are sent after
trajectory 0's first answer came back. The sandbox is not what is tested here, so
a test double stands in for the test runner.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from codemonkeys.config import (
    GenerationConfig,
    ModelSettings,
    ProviderLimits,
    ProviderSettings,
    load_config,
)
from codemonkeys.execution import patch_key
from codemonkeys.execution import test_hash as script_hash
from codemonkeys.generation.stage import ContextFile, GenerationInputs, generate
from codemonkeys.generation.trajectory import TrajectoryDeps
from codemonkeys.llm.gateway import Gateway
from codemonkeys.llm.limiter import ProviderLimiter
from codemonkeys.llm.pricing import PriceTable
from codemonkeys.llm.providers.anthropic import AnthropicModel
from codemonkeys.llm.spec import parse_model_string
from codemonkeys.prompting import Prompt
from codemonkeys.store import RunStore
from codemonkeys.store.records import CallRecord, TestExecution
from codemonkeys.testing import fake_wire
from codemonkeys.testing.fake_server import FakeLLMServer

TRAJECTORIES = 4
EDIT_TURNS = 3
SOURCE = '"""Shapes."""\n\n\ndef area(width, height):\n    return width * width\n'
# A context big enough that the shared prefix dominates each prompt, as a packed context does.
CONTEXT = [ContextFile("shapes.py", SOURCE)] + [
    ContextFile(f"lib/module_{i}.py", "".join(f"def helper_{i}_{j}(value):\n    return value + {j}\n\n" for j in range(60)))
    for i in range(4)
]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content)


def make_responder() -> Any:
    """Testing model: a test (a distinct variant per answer), then done. Editing model: edits, then done."""
    variants = itertools.count()
    lock = threading.Lock()

    def responder(body: dict[str, Any]) -> str:
        system = _text(body["system"])
        step = 1 + sum(1 for message in body["messages"] if message["role"] == "assistant")
        if "Before anybody fixes" in system:
            if step > 1:
                return "<done/>\n"
            with lock:
                number = next(variants)
            script = f"import sys\nimport shapes\n# variant {number}\nsys.exit(0 if shapes.area(2, 3) == 6 else 2)\n"
            return f"<test>\n```python\n{script}```\n</test>\n"
        if step >= EDIT_TURNS:
            return "<done/>\n"
        variant = re.search(r"# variant (\d+)", _text(body["messages"][0]["content"])).group(1)  # type: ignore[union-attr]
        search = "    return width * width\n" if step == 1 else f"    return width * height  # v{variant} s{step - 1}\n"
        replace = f"    return width * height  # v{variant} s{step}\n"
        return f"<edit>\n<path>shapes.py</path>\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n</edit>\n"

    return responder


class FixedRunner:
    """Test double for the TestRunner: the issue is present on the original code, gone on any patch."""

    __test__ = False

    def __init__(self) -> None:
        self.runs: list[tuple[str, str]] = []

    async def run(self, patch: str, script: str, *, attempt: int = 0) -> TestExecution:
        self.runs.append((patch, script))
        fixed = bool(patch.strip())
        return TestExecution(
            "env", patch_key(patch), script_hash(script), attempt,
            exit_code=0 if fixed else 2, output="fixed" if fixed else "area(2, 3) = 4", duration_s=0.01,
        )


class DictSources:
    async def read(self, path: str) -> str | None:
        return SOURCE if path == "shapes.py" else None


@pytest.fixture
def server() -> Any:
    with FakeLLMServer(make_responder(), latency_s=0.05) as server:
        yield server


def first_calls(calls: list[CallRecord]) -> dict[int, CallRecord]:
    """Each trajectory's first call (the ledger is in completion order), by trajectory index."""
    firsts: dict[int, CallRecord] = {}
    for call in calls:
        index = int((call.trajectory or "").rsplit("/", 1)[1])
        firsts.setdefault(index, call)
    return firsts


async def test_trajectory_zero_warms_the_prompt_cache_for_the_fan_out(tmp_path: Path, server: FakeLLMServer) -> None:
    store = RunStore.open(tmp_path / "run")
    limits = ProviderLimits(max_in_flight=16)
    model = AnthropicModel(
        parse_model_string("anthropic:claude-sonnet-4-6"),
        ProviderSettings(base_url=server.anthropic_base_url, max_retries=0, limits=limits),
        "test-key",
    )
    gateway = Gateway(model, store, PriceTable(load_config().pricing), limiter=ProviderLimiter(limits))
    runner = FixedRunner()
    gen = GenerationConfig(trajectories=TRAJECTORIES, max_iterations=EDIT_TURNS, testing_max_turns=3)
    prompt = Prompt("generation.j2")

    def deps(stage: str) -> TrajectoryDeps:
        return TrajectoryDeps(
            chat=gateway, store=store, runner=runner, sources=DictSources(), prompt=prompt,
            model=ModelSettings(model="anthropic:claude-sonnet-4-6", temperature=0.5), config=gen,
        )

    issue = "area(width, height) returns width * width instead of width * height."
    try:
        result = await generate(deps("testing"), deps("editing"), store, GenerationInputs("shapes-1", issue, CONTEXT), TRAJECTORIES)
    finally:
        await model.aclose()

    assert result.failures == {}
    assert len(result.candidates) == TRAJECTORIES
    assert all("+    return width * height" in c.patch for c in result.candidates)
    # The drafts were distinct, so every edit really ran on the code.
    assert len({patch for patch, _ in runner.runs if patch}) == TRAJECTORIES * (EDIT_TURNS - 1)

    systems = {
        "testing": prompt.render("testing_system", issue=issue),
        "editing": prompt.render("editing_system", issue=issue, files=CONTEXT),
    }
    # On the wire: the system prompt and the last message carry the breakpoints.
    body = server.requests[0].body
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert body["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}

    for phase, system in systems.items():
        shared = fake_wire.block_tokens(system)
        calls = store.calls(stage=phase)
        assert len(calls) == TRAJECTORIES * (2 if phase == "testing" else EDIT_TURNS)
        assert all(call.error is None and not call.cached for call in calls)
        firsts = first_calls(calls)
        assert sorted(firsts) == list(range(TRAJECTORIES))
        warm = firsts[0]
        # Trajectory 0 goes alone and writes the shared prefix ...
        assert warm.cache_read_tokens == 0, phase
        assert warm.cache_write_tokens >= shared, phase
        assert calls[0] == warm, f"{phase}: trajectory 0's first call must be answered first"
        # ... and the other first calls read all of it, writing at most their own messages.
        for index in range(1, TRAJECTORIES):
            fan_out = firsts[index]
            assert fan_out.cache_read_tokens >= shared, (phase, index, fan_out)
            assert fan_out.cache_write_tokens < shared, (phase, index, fan_out)
        # Every later call reads at least the shared prefix too.
        later = [call for call in calls if call not in firsts.values()]
        assert later and all(call.cache_read_tokens >= shared for call in later), phase

    by_trajectory: dict[str, int] = defaultdict(int)
    for call in store.calls():
        by_trajectory[call.trajectory or ""] += call.cache_write_tokens
    # Only the warm-up calls wrote a system prompt: nobody else wrote as much as one.
    for phase, system in systems.items():
        shared = fake_wire.block_tokens(system)
        writers = [tid for tid, written in by_trajectory.items() if f"/{phase}/" in tid and written >= shared]
        assert writers == [f"shapes-1/{phase}/0"], phase
