"""Generation end to end: scripted models, a real buggy repo, the real Docker sandbox.

The testing model writes a failing reproduction test; the editing model first
makes a wrong edit, sees both outputs, then makes the right one. The candidate
must fix the bug, every turn must be saved, and a rerun must not call a model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from codemonkeys.config import GenerationConfig, ModelSettings, SandboxConfig, load_config
from codemonkeys.execution import SandboxPool, TestRunner
from codemonkeys.execution.sources import SandboxSources
from codemonkeys.generation.stage import GenerationInputs, ContextFile, generate
from codemonkeys.generation.trajectory import TrajectoryDeps
from codemonkeys.llm.gateway import Gateway
from codemonkeys.llm.pricing import PriceTable
from codemonkeys.llm.scripted import ScriptedModel
from codemonkeys.llm.types import ChatRequest
from codemonkeys.prompting import Prompt
from codemonkeys.sandbox.base import EnvironmentRef
from codemonkeys.store import RunStore
from repo_images import build_repo_image
from sandbox_support import docker_client  # noqa: F401

pytestmark = pytest.mark.docker

BUGGY = '"""Shapes."""\n\n\ndef area(width, height):\n    return width * width\n\n\ndef perimeter(width, height):\n    return 2 * (width + height)\n'
REPO_FILES = {"shapes.py": BUGGY, "README.md": "shapes\n", ".gitignore": "__pycache__/\n"}

TEST = """<test>
```python
import sys
import shapes

result = shapes.area(2, 3)
print("area(2, 3) =", result)
sys.exit(0 if result == 6 else 2)
```
</test>"""

WRONG_EDIT = """The area should use both sides.
<edit>
<path>shapes.py</path>
<<<<<<< SEARCH
    return width * width
=======
    return width + height
>>>>>>> REPLACE
</edit>"""

RIGHT_EDIT = """Oops, multiplication.
<edit>
<path>shapes.py</path>
<<<<<<< SEARCH
    return width + height
=======
    return width * height
>>>>>>> REPLACE
</edit>"""


@pytest.fixture(scope="module")
def shapes_env(docker_client) -> EnvironmentRef:  # type: ignore[no-untyped-def]
    from codemonkeys.sandbox.baseimage import ensure_test_image

    tag = build_repo_image(docker_client, ensure_test_image(docker_client), REPO_FILES)
    return EnvironmentRef(key=f"shapes-{tag.rsplit(':', 1)[1]}", image=tag, python="python3")


def reply_for_editing(request: ChatRequest) -> str:
    """Wrong edit first, right edit after seeing it fail, then done."""
    seen = len([m for m in request.messages if m.role == "assistant"])
    return [WRONG_EDIT, RIGHT_EDIT, "<done/>"][seen]


def reply_for_testing(request: ChatRequest) -> str:
    seen = len([m for m in request.messages if m.role == "assistant"])
    return [TEST, "<done/>"][seen]


async def run_generation(store: RunStore, env: EnvironmentRef, testing: ScriptedModel, editing: ScriptedModel, n: int):  # type: ignore[no-untyped-def]
    from codemonkeys.sandbox.docker_backend import DockerSandboxFactory

    config = load_config()
    prices = PriceTable(config.pricing)
    factory = DockerSandboxFactory(SandboxConfig())
    prompt = Prompt("generation.j2")
    gen = GenerationConfig(trajectories=n, test_timeout_s=30)
    async with SandboxPool(factory, env, size=2) as pool:
        runner = TestRunner(pool, store, timeout_s=30)
        sources = SandboxSources(pool)

        def deps(model: ScriptedModel) -> TrajectoryDeps:
            return TrajectoryDeps(
                chat=Gateway(model, store, prices), store=store, runner=runner, sources=sources,
                prompt=prompt, model=ModelSettings(model="scripted:x"), config=gen,
            )

        inputs = GenerationInputs("shapes-1", "area() returns width*width instead of width*height", [ContextFile("shapes.py", BUGGY)])
        result = await generate(deps(testing), deps(editing), store, inputs, n)
        return result, runner.executed, pool.started


async def test_generation_fixes_the_bug_and_resumes_for_free(tmp_path: Path, shapes_env: EnvironmentRef) -> None:
    store = RunStore.open(tmp_path / "run")
    testing = ScriptedModel(reply_for_testing, name="scripted:testing")
    editing = ScriptedModel(reply_for_editing, name="scripted:editing")
    result, executed, started = await run_generation(store, shapes_env, testing, editing, n=2)

    assert result.failures == {}
    assert len(result.candidates) == 2
    patch = result.candidates[0].patch
    assert "-    return width * width" in patch and "+    return width * height" in patch
    # The editing model saw the wrong edit fail before it fixed it.
    first = [call.request for call in editing.calls if call.request.sample == 0]
    assert len(first) == 3
    second_prompt = first[1].messages[-1].content
    assert "On the edited code the test exits with 2" in second_prompt
    third_prompt = first[2].messages[-1].content
    assert "On the edited code the test exits with 0" in third_prompt
    # Identical runs hit the execution cache: original x test once, three distinct drafts.
    assert executed == 3
    assert started <= 2
    turns = store.turns("shapes-1/editing/0")
    assert [t.turn for t in turns] == [0, 1, 2, 3]

    # The candidate really fixes the bug, checked from the cache-free runner on a fresh pool.
    from codemonkeys.sandbox.docker_backend import DockerSandboxFactory

    async with SandboxPool(DockerSandboxFactory(SandboxConfig()), shapes_env, size=1) as pool:
        fresh = TestRunner(pool, RunStore.open(tmp_path / "other"), timeout_s=30)
        check = await fresh.run(patch, result.candidates[0].test)
    assert check.exit_code == 0, check.output

    # Rerun: every trajectory is finished, so no model is called and nothing runs again.
    again, executed_again, _ = await run_generation(
        store, shapes_env, ScriptedModel([], name="scripted:testing"), ScriptedModel([], name="scripted:editing"), n=2
    )
    assert [c.patch for c in again.candidates] == [c.patch for c in result.candidates]
    assert executed_again == 0
