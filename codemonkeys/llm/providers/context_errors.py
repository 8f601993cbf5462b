"""A server's "the prompt does not fit" answer, recognised in each vendor's wording.

Every server answers an over-long request with a client error (400, some 413
or 422), in its own words. That is a model-side outcome, the conversation
outgrew the window, not an infrastructure failure to retry, so it becomes
:class:`~codemonkeys.errors.ContextLimitReached` with the numbers when the
message gives them. The wordings (taken from each server's source, and the
llama-cpp-python one captured from the real server):

- Anthropic: ``prompt is too long: 210000 tokens > 200000 maximum``.
- OpenAI, and llama-cpp-python's server, which copies it: code
  ``context_length_exceeded``, ``This model's maximum context length is 512
  tokens. However, you requested 851 tokens (831 in the messages, 20 in the
  completion). ...``.
- vLLM: ``This model's maximum context length is N tokens. However, you
  requested M tokens ...``, or ``The decoder prompt (length M) is longer than
  the maximum model length of N.``.
- SGLang: ``The input (M tokens) is longer than the model's context length (N tokens).``.
- llama.cpp's C++ server: type ``exceed_context_size_error``, ``the request
  exceeds the available context size, try increasing it`` (newer builds:
  ``request (M tokens) exceeds the available context size (N tokens)``), with
  ``n_prompt_tokens`` and ``n_ctx`` in the error body.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ...errors import ContextLimitReached

CLIENT_ERROR_STATUSES = (400, 413, 422)

_MARKERS = (
    "context_length_exceeded",
    "exceed_context_size_error",
    "maximum context length",
    "prompt is too long",
    "longer than the maximum model length",
    "longer than the model's context length",
    "exceeds the available context size",
)

# Where each wording gives the prompt's tokens (p) and the window (w); the first match wins.
_NUMBERS = tuple(
    re.compile(pattern, re.S)
    for pattern in (
        r"prompt is too long: (?P<p>\d+) tokens > (?P<w>\d+) maximum",
        r"maximum context length is (?P<w>\d+) tokens.*?\((?P<p>\d+) in the messages",
        r"maximum context length is (?P<w>\d+) tokens.*?(?:requested|resulted in|has) (?P<p>\d+)(?: input)? tokens",
        r"\(length (?P<p>\d+)\) is longer than the maximum model length of (?P<w>\d+)",
        r"input \((?P<p>\d+) tokens\) is longer than the model's context length \((?P<w>\d+) tokens\)",
        r"request \((?P<p>\d+) tokens\) exceeds the available context size \((?P<w>\d+) tokens\)",
        r"maximum context length is (?P<w>\d+) tokens",
    )
)


def _text(message: str, body: Any) -> str:
    try:
        return message + "\n" + json.dumps(body, default=str)
    except (TypeError, ValueError):
        return message + "\n" + str(body)


def _int_field(body: Any, name: str) -> int | None:
    """``name`` in an error body (top level or under ``error``), when it is a positive integer."""
    for part in (body, body.get("error") if isinstance(body, dict) else None):
        if isinstance(part, dict) and isinstance(part.get(name), int) and part[name] > 0:
            return int(part[name])
    return None


def context_limit_error(status: int | None, message: str, body: Any, label: str) -> ContextLimitReached | None:
    """The server's context-length refusal as :class:`ContextLimitReached`; ``None`` for any other error."""
    if status not in CLIENT_ERROR_STATUSES:
        return None
    text = _text(message, body)
    if not any(marker in text for marker in _MARKERS):
        return None
    prompt = _int_field(body, "n_prompt_tokens")
    window = _int_field(body, "n_ctx")
    for pattern in _NUMBERS:
        match = pattern.search(text)
        if match is not None:
            groups = match.groupdict()
            window = window or int(groups["w"])
            prompt = prompt or (int(groups["p"]) if groups.get("p") else None)
            break
    numbers = f" ({prompt} prompt tokens, window {window})" if prompt and window else ""
    return ContextLimitReached(
        f"{label}: the server refused the request as longer than its context window{numbers}: {message}",
        prompt_tokens=prompt,
        window=window,
    )
