"""The data contract of the model layer: requests, responses, usage, and the Model protocol.

Stage code builds a :class:`ChatRequest`, hands it to a :class:`Model` (usually
the :class:`~codemonkeys.llm.gateway.Gateway`, which adds caching, limits and
the ledger) and reads a :class:`ChatResponse`. No vendor type crosses this line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

Role = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message. ``cache`` marks a prompt-cache breakpoint after it."""

    role: Role
    content: str
    cache: bool = False


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """Everything that determines a model's answer, and nothing else.

    ``sample`` distinguishes deliberate re-samples of the same prompt (trajectory
    ``i`` of ``n``): it is part of the cache key but never sent to the provider.
    ``system_cache`` puts a cache breakpoint after the system prompt.
    """

    messages: tuple[Message, ...]
    system: str | None = None
    max_tokens: int = 4096
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    sample: int = 0
    system_cache: bool = False

    def key(self, model: str) -> str:
        """Stable hash of the request for ``model``: the response-cache key."""
        # Built by hand: the same JSON as ``{"model": model, **asdict(self)}``, at a third of the cost
        # (this runs on every call).
        payload = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content, "cache": m.cache} for m in self.messages],
            "system": self.system,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stop": self.stop,
            "sample": self.sample,
            "system_cache": self.system_cache,
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def prompt_text(self) -> str:
        """All prompt text, for token estimates."""
        parts = [self.system or ""]
        parts.extend(message.content for message in self.messages)
        return "\n".join(parts)


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one call, normalized across providers.

    ``input_tokens`` are the prompt tokens billed at the full input price:
    cache reads and cache writes are counted apart (Anthropic's convention;
    OpenAI's ``prompt_tokens`` include ``cached_tokens`` and are converted).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    # True when the server reported no usage and the counts are our offline estimate.
    estimated: bool = False

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.estimated or other.estimated,
        )


@dataclass(frozen=True, slots=True)
class ChatResponse:
    """A model's answer. ``cached`` is true when it came from the response cache."""

    text: str
    usage: Usage = field(default_factory=Usage)
    stop_reason: str | None = None
    model: str = ""
    cached: bool = False

    def to_json(self) -> str:
        usage = self.usage
        return json.dumps(
            {
                "text": self.text,
                "usage": {
                    "input_tokens": usage.input_tokens,
                    "output_tokens": usage.output_tokens,
                    "cache_read_tokens": usage.cache_read_tokens,
                    "cache_write_tokens": usage.cache_write_tokens,
                    "estimated": usage.estimated,
                },
                "stop_reason": self.stop_reason,
                "model": self.model,
            }
        )

    @classmethod
    def from_json(cls, blob: str) -> ChatResponse:
        data = json.loads(blob)
        return cls(
            text=data["text"],
            usage=Usage(**data["usage"]),
            stop_reason=data.get("stop_reason"),
            model=data.get("model", ""),
        )


@dataclass(frozen=True, slots=True)
class CallTag:
    """Who is asking: recorded with every call in the ledger."""

    stage: str
    instance_id: str | None = None
    trajectory: str | None = None


@runtime_checkable
class Model(Protocol):
    """Anything that answers a chat request.

    Implementations raise :class:`~codemonkeys.errors.ProviderError` (an
    infrastructure failure) when the provider cannot answer; they never return
    an empty answer in place of an error.
    """

    @property
    def name(self) -> str:
        """The model string, e.g. ``anthropic:claude-sonnet-4-5``."""
        ...

    async def complete(self, request: ChatRequest) -> ChatResponse: ...


class ChatService(Protocol):
    """What stage code calls: a model behind the gateway's books (see ``Gateway``)."""

    @property
    def name(self) -> str: ...

    async def complete(self, request: ChatRequest, tag: CallTag) -> ChatResponse: ...
