"""An oracle behind the loopback server: real SDK calls, answers from the gold patch.

Tests of the whole pipeline through the provider wire formats (budgets,
prompt caching, retries) need answers that move every stage forward. This
responder reads a wire request, recognizes the stage by its system prompt and
the instance by its issue text, and answers as :class:`~codemonkeys.oracle.OracleModel`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from ..llm.spec import parse_model_string
from ..llm.types import ChatRequest, Message
from ..oracle import OracleModel

# A phrase of each stage's system prompt (see prompts/), in the order they are tried.
STAGE_MARKERS = (
    ("relevance", "You will be shown the issue, then one file"),
    ("ranking", "rank these files by how important"),
    ("testing", "Before anybody fixes the GitHub issue below"),
    ("editing", "Fix the GitHub issue below by editing the repository"),
    ("selection", "Several candidate edits were written to fix the GitHub issue"),
)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content if isinstance(block, Mapping))


def wire_request(body: Mapping[str, Any]) -> ChatRequest:
    """An Anthropic or OpenAI request body as a :class:`ChatRequest` (system prompt, turns)."""
    system = _text(body.get("system", ""))
    messages: list[Message] = []
    for message in body.get("messages", []):
        if message.get("role") == "system":
            system = _text(message.get("content", ""))
            continue
        messages.append(Message(message["role"], _text(message.get("content", ""))))
    return ChatRequest(messages=tuple(messages), system=system or None)


class WireOracle:
    """Responder for :class:`~codemonkeys.testing.fake_server.FakeLLMServer`.

    ``instances`` maps each instance's issue text to the arguments of its
    oracle: gold patch and reproduction test script.
    """

    def __init__(self, instances: Sequence[tuple[str, str, str, str]]) -> None:
        """``instances``: (instance_id, problem_statement, gold_patch, test_script) per instance."""
        self._instances = list(instances)

    def __call__(self, body: dict[str, Any]) -> str:
        request = wire_request(body)
        text = "\n".join([request.system or "", *(m.content for m in request.messages)])
        stage = next((name for name, marker in STAGE_MARKERS if marker in (request.system or "")), None)
        if stage is None:
            raise ValueError("the wire oracle cannot tell which stage this request is for")
        for instance_id, issue, gold, test in self._instances:
            if issue.strip() in text:
                model = OracleModel(parse_model_string("oracle"), stage, instance_id=instance_id, gold_patch=gold, test_script=test)
                return asyncio.run(model.complete(request)).text
        raise ValueError("the wire oracle does not know the issue of this request")
