"""The wire formats the loopback server speaks, as pure functions.

Anthropic Messages (``POST /v1/messages``) and OpenAI Chat Completions
(``POST /v1/chat/completions``): request bodies in, response and error bodies
out, with usage fields shaped like the real ones -- including prompt-cache
tokens, simulated by :class:`PrefixCache`:

* Anthropic: only prefixes ending at a ``cache_control`` breakpoint are
  written. A request reads the longest prefix, ending at any block boundary up
  to its last breakpoint, that an earlier request wrote
  (``cache_read_input_tokens``); the part between that and its last breakpoint
  is written (``cache_creation_input_tokens``); the rest is ``input_tokens``.
* OpenAI-compatible: automatic prefix caching at message boundaries (the real
  API caches in 128-token steps, vLLM in 16-token blocks): ``cached_tokens`` is
  the longest earlier-seen message prefix, and is *included* in
  ``prompt_tokens``, as OpenAI reports it.

Token counts are cl100k counts (``codemonkeys.llm.tokens``) for every API,
computed per text block and memoized; role markers and message framing are not
counted. ``min_cache_tokens`` mimics the providers' minimum cacheable prefix
(1024 tokens for Sonnet and GPT-4.1); it defaults to 0 so small test prompts
cache too.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..llm.tokens import encoding

ANTHROPIC = "anthropic"
OPENAI = "openai"

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


@functools.lru_cache(maxsize=8192)
def block_tokens(text: str) -> int:
    """cl100k tokens of one text block (memoized: cached prefixes repeat)."""
    return len(encoding().encode_ordinary(text)) if text else 0


def truncate_tokens(text: str, limit: int) -> str:
    """The first ``limit`` tokens of ``text``."""
    return encoding().decode(encoding().encode_ordinary(text)[:limit])


@dataclass(frozen=True, slots=True)
class Block:
    """One text block of a prompt, in order, with its role and cache breakpoint flag."""

    role: str
    text: str
    breakpoint: bool = False


def _text_of(content: Any) -> list[tuple[str, bool]]:
    """(text, has cache_control) per block of a message content (a string or a list of blocks)."""
    if isinstance(content, str):
        return [(content, False)]
    blocks = []
    for part in content or ():
        if isinstance(part, dict):
            text = (
                part.get("text")
                if part.get("type", "text") == "text"
                else str(part.get("content", ""))
            )
            blocks.append((text or "", bool(part.get("cache_control"))))
    return blocks


def anthropic_blocks(body: dict[str, Any]) -> list[Block]:
    """The prompt of a Messages request as blocks: system first, then messages."""
    blocks = [Block("system", text, mark) for text, mark in _text_of(body.get("system") or [])]
    for message in body.get("messages", []):
        role = str(message.get("role", "user"))
        blocks.extend(Block(role, text, mark) for text, mark in _text_of(message.get("content")))
    return blocks


def openai_blocks(body: dict[str, Any]) -> list[Block]:
    """The prompt of a Chat Completions request, one block per message."""
    blocks = []
    for message in body.get("messages", []):
        parts = _text_of(message.get("content"))
        blocks.append(Block(str(message.get("role", "user")), "".join(text for text, _ in parts)))
    return blocks


@dataclass(frozen=True, slots=True)
class PromptUsage:
    """Prompt tokens split like Anthropic reports them (uncached, read, written)."""

    uncached: int
    cache_read: int
    cache_write: int

    @property
    def total(self) -> int:
        return self.uncached + self.cache_read + self.cache_write


class PrefixCache:
    """Remembers hashes of prompt prefixes, like a provider's prompt cache (thread-safe)."""

    def __init__(self, min_cache_tokens: int = 0) -> None:
        self.min_cache_tokens = min_cache_tokens
        self._seen: set[bytes] = set()
        self._lock = threading.Lock()

    @staticmethod
    def _prefixes(blocks: Sequence[Block]) -> tuple[list[bytes], list[int]]:
        digest = hashlib.sha256()
        hashes, sums, total = [], [], 0
        for block in blocks:
            digest.update(
                block.role.encode() + b"\0" + block.text.encode("utf-8", "surrogatepass") + b"\0"
            )
            hashes.append(digest.digest())
            total += block_tokens(block.text)
            sums.append(total)
        return hashes, sums

    def explicit(self, blocks: Sequence[Block]) -> PromptUsage:
        """Anthropic's breakpoint caching."""
        hashes, sums = self._prefixes(blocks)
        total = sums[-1] if sums else 0
        marks = [
            i
            for i, block in enumerate(blocks)
            if block.breakpoint and sums[i] >= self.min_cache_tokens
        ]
        if not marks:
            return PromptUsage(total, 0, 0)
        last = marks[-1]
        with self._lock:
            read = max((sums[i] for i in range(last + 1) if hashes[i] in self._seen), default=0)
            self._seen.update(hashes[i] for i in marks)
        return PromptUsage(total - sums[last], read, sums[last] - read)

    def automatic(self, blocks: Sequence[Block]) -> PromptUsage:
        """OpenAI-style automatic prefix caching at message boundaries."""
        hashes, sums = self._prefixes(blocks)
        total = sums[-1] if sums else 0
        with self._lock:
            read = max((sums[i] for i, h in enumerate(hashes) if h in self._seen), default=0)
            self._seen.update(h for i, h in enumerate(hashes) if sums[i] >= self.min_cache_tokens)
        return PromptUsage(total - read, read, 0)


def last_user_text(blocks: Sequence[Block]) -> str:
    """The default reply: the last user block, echoed."""
    for block in reversed(blocks):
        if block.role == "user":
            return block.text
    return ""


def _apply_stops(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    cut, hit = len(text), None
    for stop in stops:
        index = text.find(stop) if stop else -1
        if 0 <= index < cut:
            cut, hit = index, stop
    return text[:cut], hit


def anthropic_message(
    body: dict[str, Any], text: str, prompt: PromptUsage, number: int
) -> dict[str, Any]:
    """A Messages API response body."""
    text, stop = _apply_stops(text, body.get("stop_sequences") or ())
    stop_reason = "stop_sequence" if stop is not None else "end_turn"
    max_tokens = int(body.get("max_tokens", 4096))
    output = block_tokens(text)
    if output > max_tokens:
        text, output, stop_reason, stop = (
            truncate_tokens(text, max_tokens),
            max_tokens,
            "max_tokens",
            None,
        )
    return {
        "id": f"msg_fake{number:08d}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "fake"),
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop_reason,
        "stop_sequence": stop,
        "usage": {
            "input_tokens": prompt.uncached,
            "output_tokens": output,
            "cache_creation_input_tokens": prompt.cache_write,
            "cache_read_input_tokens": prompt.cache_read,
        },
    }


def openai_completion(
    body: dict[str, Any], text: str, prompt: PromptUsage, number: int
) -> dict[str, Any]:
    """A Chat Completions response body."""
    stops = body.get("stop") or ()
    text, _ = _apply_stops(text, [stops] if isinstance(stops, str) else stops)
    finish = "stop"
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    output = block_tokens(text)
    if limit is not None and output > int(limit):
        text, output, finish = truncate_tokens(text, int(limit)), int(limit), "length"
    return {
        "id": f"chatcmpl-fake{number:08d}",
        "object": "chat.completion",
        "created": 1_700_000_000 + number,
        "model": body.get("model", "fake"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt.total,
            "completion_tokens": output,
            "total_tokens": prompt.total + output,
            "prompt_tokens_details": {"cached_tokens": prompt.cache_read},
        },
    }


def error_body(api: str, status: int, message: str | None = None) -> dict[str, Any]:
    """An error body shaped like the API's own (Anthropic: 529 ``overloaded_error`` etc.)."""
    if api == ANTHROPIC:
        kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        default = "Overloaded" if status == 529 else f"fake {kind}"
        return {"type": "error", "error": {"type": kind, "message": message or default}}
    kind, code = _OPENAI_ERROR_TYPES.get(status, ("server_error", None))
    return {
        "error": {
            "message": message or f"fake {kind} ({status})",
            "type": kind,
            "param": None,
            "code": code,
        }
    }
