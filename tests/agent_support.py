"""Scripted pieces for the agent loop's tests: a judging test runner, file sources, deps builders."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from codemonkeys.config import GenerationConfig, ModelSettings, load_config
from codemonkeys.execution.runner import patch_key, test_hash
from codemonkeys.generation.state import TrajectoryState
from codemonkeys.generation.trajectory import TrajectoryDeps
from codemonkeys.llm.gateway import Gateway
from codemonkeys.llm.pricing import PriceTable
from codemonkeys.llm.types import ChatService
from codemonkeys.prompting import Prompt
from codemonkeys.store import RunStore
from codemonkeys.store.records import TestExecution

SOURCE = '"""Shapes."""\n\n\ndef area(width, height):\n    return width * width\n'
ISSUE = "area(width, height) returns width*width instead of width*height"


def answer_test(marker: str = "v1") -> str:
    return (
        "I will call area(2, 3) and print it.\n<test>\n```python\nimport sys\nimport shapes\n"
        f"# {marker}\nresult = shapes.area(2, 3)\nprint('area(2, 3) =', result)\nsys.exit(0 if result == 6 else 2)\n```\n</test>\n"
    )


def edit_answer(search: str, replace: str, path: str = "shapes.py") -> str:
    return f"Plan: change one line.\n<edit>\n<path>{path}</path>\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n</edit>\n"


def fixed(patch: str) -> bool:
    return "+    return width * height" in patch


class JudgingRunner:
    """Exit 0 when the patch multiplies width by height, 2 otherwise; records every run."""

    __test__ = False

    def __init__(self, judge: Callable[[str, str], int] | None = None) -> None:
        self.judge = judge or (lambda patch, script: 0 if fixed(patch) else 2)
        self.runs: list[tuple[str, str]] = []

    async def run(self, patch: str, script: str, *, attempt: int = 0) -> TestExecution:
        self.runs.append((patch, script))
        code = self.judge(patch, script)
        return TestExecution("env", patch_key(patch), test_hash(script), attempt, code, f"observed exit {code}", 0.1)


class DictSources:
    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    async def read(self, path: str) -> str | None:
        return self.files.get(path)


def gateway(model: Any, store: RunStore) -> Gateway:
    return Gateway(model, store, PriceTable(load_config().pricing))


def deps(
    store: RunStore,
    chat: ChatService,
    runner: JudgingRunner | None = None,
    *,
    files: dict[str, str] | None = None,
    window: int | None = None,
    max_tokens: int = 256,
    **config: Any,
) -> TrajectoryDeps:
    return TrajectoryDeps(
        chat=chat, store=store, runner=runner or JudgingRunner(), sources=DictSources(files or {"shapes.py": SOURCE}),
        prompt=Prompt("generation.j2"),
        model=ModelSettings(model="scripted:x", max_output_tokens=max_tokens, context_window=window),
        config=GenerationConfig(**config),
    )


def fresh_testing(index: int = 0, system: str = "You write tests.") -> TrajectoryState:
    return TrajectoryState(instance_id="i1", kind="testing", index=index, system=system)


def fresh_editing(test: str, index: int = 0, system: str = "You edit code.") -> TrajectoryState:
    return TrajectoryState(instance_id="i1", kind="editing", index=index, system=system, test=test)
