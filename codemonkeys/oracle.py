"""Oracle models for dry runs: answer every stage from the instance's gold and test patches.

They validate an environment and the whole machinery before any money is
spent. ``oracle`` is always right; ``oracle-noisy:P`` makes a fraction P of
the trajectories (chosen by a hash of instance and trajectory index, so reruns
agree) produce a plausible wrong edit, so voting and selection have work to
do. Everything they produce is labelled with the oracle's model name, and
export refuses it unless asked explicitly.

Each stage's answer follows the format its parser reads; the oracle finds what
it needs in the prompt (the file path of a relevance call, the candidates of a
selection call) through the same markup the templates write.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from unidiff import PatchSet

from .edits import EditBlock, TestScript, normalize_patch, render_edits, render_test_script
from .llm.spec import ModelSpec
from .llm.types import ChatRequest, ChatResponse, Usage
from .llm.gateway import approx_tokens

if TYPE_CHECKING:
    from .config import Config

_FILE_PATH = re.compile(r'<file path="(?P<path>[^"]+)"')
_CANDIDATE = re.compile(r'<candidate number="(?P<number>\d+)">\s*```diff\n(?P<diff>.*?)```\s*</candidate>', re.S)


def is_oracle(model_name: str) -> bool:
    """True for the oracle doubles, whose output must never pass for a real model's."""
    return model_name.split(":", 1)[0] in ("oracle", "oracle-noisy")


def gold_files(patch: str) -> list[str]:
    """Files the gold patch touches, in patch order."""
    return [patched.path for patched in PatchSet(patch)]


def patch_to_edits(patch: str) -> list[EditBlock]:
    """A unified diff as SEARCH/REPLACE blocks: each hunk's old lines become SEARCH, new lines REPLACE.

    Deleted files have no block (the edit format cannot delete a file).
    """
    blocks: list[EditBlock] = []
    for patched in PatchSet(patch):
        if patched.is_removed_file:
            continue
        if patched.is_added_file:
            content = "".join(line.value for hunk in patched for line in hunk if line.is_added)
            blocks.append(EditBlock(path=patched.path, search="", replace=_whole(content)))
            continue
        for hunk in patched:
            search = "".join(line.value for line in hunk if line.is_context or line.is_removed)
            replace = "".join(line.value for line in hunk if line.is_context or line.is_added)
            blocks.append(EditBlock(path=patched.path, search=_whole(search), replace=_whole(replace)))
    return blocks


def _whole(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


def wrong_edits(patch: str) -> list[EditBlock]:
    """A plausible wrong fix: the gold edit without its last hunk, or, with one hunk, a no-op touch."""
    blocks = patch_to_edits(patch)
    if len(blocks) > 1:
        return blocks[:-1]
    if not blocks:
        return blocks
    block = blocks[0]
    old = block.search or block.replace
    first = old.splitlines(keepends=True)
    indent = first[0][: len(first[0]) - len(first[0].lstrip())] if first else ""
    touched = f"{indent}# TODO: handle the case reported in the issue\n" + old
    return [EditBlock(path=block.path, search=block.search, replace=touched if block.search else block.replace)]


def reproduction_script(test_patch: str, test_command: str, env_vars: dict[str, str] | None = None) -> str:
    """A test in the exit-code protocol built from the instance's own tests.

    It applies the test patch, runs the instance's test command on the test
    files, reverts the test patch, and reports 0 when the tests pass, 2 when
    they fail.
    """
    return f'''import os
import subprocess
import sys

TEST_PATCH = {json.dumps(test_patch)}
TEST_COMMAND = {json.dumps(test_command)}
ENV = dict(os.environ, **{json.dumps(env_vars or {})})

applied = subprocess.run(["git", "apply", "-"], input=TEST_PATCH, text=True, capture_output=True)
if applied.returncode != 0:
    print("cannot apply the test patch:", applied.stderr)
    sys.exit(1)
try:
    result = subprocess.run(["bash", "-c", TEST_COMMAND], env=ENV)
finally:
    subprocess.run(["git", "apply", "-R", "-"], input=TEST_PATCH, text=True, capture_output=True)
print("tests exit code:", result.returncode)
sys.exit(0 if result.returncode == 0 else 2)
'''


def build_oracle(
    spec: ModelSpec, *, config: Config, api_key: str | None, stage: str, instance: Mapping[str, Any] | None
) -> OracleModel:
    """The provider builder of ``oracle`` and ``oracle-noisy:P`` (see ``llm.registry.PROVIDERS``).

    It answers from the instance's own gold and test patches, as the run store keeps its dataset row.
    """
    from .env.grading import build_test_command
    from .env.specs import SpecRegistry
    from .errors import UnknownProviderError
    from .swebench.instances import Instance

    if instance is None:
        raise UnknownProviderError(f"the oracle answers for a known instance only (stage {stage})")
    row = Instance.model_validate(dict(instance))
    env_spec = SpecRegistry.default(config.environment.spec_overrides, config.environment.spec_files).get(
        row.repo, row.version
    )
    script = reproduction_script(row.test_patch, build_test_command(row, env_spec), env_spec.env_vars)
    return OracleModel(spec, stage, instance_id=row.instance_id, gold_patch=row.patch, test_script=script)


class OracleModel:
    """Implements :class:`~codemonkeys.llm.types.Model` for one instance and one stage."""

    def __init__(
        self,
        spec: ModelSpec,
        stage: str,
        *,
        instance_id: str,
        gold_patch: str,
        test_script: str,
    ) -> None:
        self._spec = spec
        self._stage = stage
        self._instance_id = instance_id
        self._gold = gold_patch
        self._test = test_script
        self._noise = float(spec.name) if spec.provider == "oracle-noisy" else 0.0

    @property
    def name(self) -> str:
        return self._spec.label

    def noisy(self, sample: int) -> bool:
        """Whether trajectory ``sample`` gets the wrong edit; stable across runs and machines."""
        digest = hashlib.sha256(f"{self._instance_id}\0{sample}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self._noise

    async def complete(self, request: ChatRequest) -> ChatResponse:
        text = self._answer(request)
        usage = Usage(input_tokens=approx_tokens(request.prompt_text()), output_tokens=approx_tokens(text))
        return ChatResponse(text=text, usage=usage, stop_reason="end_turn", model=self.name)

    def _answer(self, request: ChatRequest) -> str:
        turns = sum(1 for message in request.messages if message.role == "assistant")
        last = request.messages[-1].content if request.messages else ""
        if self._stage == "relevance":
            found = _FILE_PATH.findall(last)
            if found and found[-1] in gold_files(self._gold):
                return f"<relevant>yes</relevant>\n<summary>\nThe gold patch edits {found[-1]}.\n</summary>\n"
            return "<relevant>no</relevant>\n"
        if self._stage == "ranking":
            paths = _FILE_PATH.findall(last)
            gold = [path for path in gold_files(self._gold) if path in paths]
            ordered = gold + [path for path in paths if path not in gold]
            return "<ranking>\n" + "".join(f"{path}\n" for path in ordered) + "</ranking>\n"
        if self._stage == "testing":
            return render_test_script(TestScript(script=self._test)) if turns == 0 else "<done/>\n"
        if self._stage == "editing":
            if turns > 0:
                return "<done/>\n"
            blocks = wrong_edits(self._gold) if self.noisy(request.sample) else patch_to_edits(self._gold)
            return render_edits(blocks)
        if self._stage == "selection":
            if turns == 0:  # a selection trajectory starts with a test of its own
                return "The instance's own tests tell the candidates apart.\n" + render_test_script(TestScript(script=self._test))
            return f"The candidate equal to the gold patch is the right one.\n<choice>{self._choose(request)}</choice>\n"
        raise ValueError(f"the oracle has no answer for stage {self._stage!r}")

    def _choose(self, request: ChatRequest) -> int:
        text = "\n".join([request.system or "", *(message.content for message in request.messages)])
        gold = change_signature(self._gold)
        candidates: Sequence[tuple[str, str]] = _CANDIDATE.findall(text)
        for number, diff in candidates:
            if change_signature(diff) == gold:
                return int(number)
        return 1


def change_signature(patch: str) -> dict[str, Counter[tuple[str, str]]]:
    """What a patch changes, per file: the removed and added non-blank lines, wherever the hunks fall.

    Two diffs of the same edit can place their hunks differently (a blank line
    counted before or after an insertion); their signatures are equal.
    """
    signature: dict[str, Counter[tuple[str, str]]] = {}
    for patched in PatchSet(normalize_patch(patch)):
        lines = Counter(
            ("+" if line.is_added else "-", line.value.strip())
            for hunk in patched for line in hunk
            if (line.is_added or line.is_removed) and line.value.strip()
        )
        if lines:
            signature[patched.path] = lines
    return signature
