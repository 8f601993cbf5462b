"""What trajectories act on, behind narrow protocols, and how a test run is shown to a model."""

from __future__ import annotations

from typing import Any, Protocol

from ..edits import classify_exit
from ..sandbox.truncate import truncate_middle
from ..store.records import TestExecution


class SourceFiles(Protocol):
    """Contents of repository files at the base commit; ``None`` for a missing file."""

    async def read(self, path: str) -> str | None: ...


class ScriptRunner(Protocol):
    """Runs a script on the code with ``patch`` applied (``""``: the original code)."""

    async def run(self, patch: str, script: str, *, attempt: int = 0) -> TestExecution: ...


TestRunnerLike = ScriptRunner  # the name stage code has used


def execution_view(execution: TestExecution, limit: int) -> dict[str, Any]:
    """What the model sees of a test run: exit code, outcome, output cut in the middle."""
    output, _ = truncate_middle(execution.output.encode("utf-8", errors="replace"), limit)
    outcome = classify_exit(execution.exit_code, execution.timed_out)
    exit_code = "none (killed by the time limit)" if execution.timed_out else execution.exit_code
    return {"exit_code": exit_code, "outcome": str(outcome).replace("_", " "), "output": output or "(no output)"}
