"""Claude through the official ``anthropic`` SDK (Messages API), with prompt caching.

Retries are the SDK's own (``max_retries`` from the provider settings): it
retries 408/409/429/5xx -- 529 "overloaded" included -- and connection errors
and timeouts, with exponential backoff, honouring ``retry-after`` and
``retry-after-ms``. Whatever still fails becomes a :class:`ProviderError`
carrying the HTTP status; a 400 "prompt is too long" is the model-side
:class:`~codemonkeys.errors.ContextLimitReached` instead.

Prompt caching: ``cache_control: {"type": "ephemeral"}`` goes on the system
block when ``request.system_cache`` and on the last content block of every
message with ``cache=True``. The API takes at most four breakpoints; extra ones
are dropped from the front, because a later breakpoint's prefix contains the
earlier ones (a read at the later breakpoint covers them).

Temperature: the SDK (1.0 and later) no longer takes ``temperature`` as an
argument, the API still accepts it for models that sample (Sonnet 4.5 and
older) and rejects it on the newest ones (Opus 4.7+). It is sent in the raw
body unless ``providers.anthropic.send_temperature`` is false.

A response with no content blocks at all is a :class:`ProviderError` (nothing
was answered, a rerun may fix it); a response whose text blocks are empty is
the model's answer, the empty string, for the stage's parser to judge.
"""

from __future__ import annotations

import logging
from typing import Any

import anthropic

from ...config import ProviderSettings
from ...errors import ContextLimitReached, ProviderError
from ..spec import ModelSpec
from .context_errors import context_limit_error
from .sent import never_sent
from ..types import ChatRequest, ChatResponse, Usage

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.anthropic.com"
MAX_BREAKPOINTS = 4
_EPHEMERAL = {"type": "ephemeral"}


def build_params(
    request: ChatRequest, model: str, *, send_temperature: bool = True
) -> dict[str, Any]:
    """The keyword arguments of ``messages.create`` for ``request`` (pure)."""
    marks = ([-1] if request.system and request.system_cache else []) + [
        index for index, message in enumerate(request.messages) if message.cache
    ]
    keep = set(marks[-MAX_BREAKPOINTS:])
    messages: list[dict[str, Any]] = []
    for index, message in enumerate(request.messages):
        if index in keep:
            block = {"type": "text", "text": message.content, "cache_control": _EPHEMERAL}
            messages.append({"role": message.role, "content": [block]})
        else:
            messages.append({"role": message.role, "content": message.content})
    params: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens,
        "messages": messages,
    }
    if send_temperature:
        # SDK 1.0 dropped the deprecated sampling arguments from its signature; the API still
        # takes them for the models that support sampling, through the raw body.
        params["extra_body"] = {"temperature": request.temperature}
    if request.system:
        system: dict[str, Any] = {"type": "text", "text": request.system}
        if -1 in keep:
            system["cache_control"] = _EPHEMERAL
        params["system"] = [system]
    if request.stop:
        params["stop_sequences"] = list(request.stop)
    return params


def parse_message(message: Any, label: str) -> ChatResponse:
    """A ``Message`` from the SDK into our response; no content at all is a :class:`ProviderError`."""
    if not message.content:
        raise ProviderError(
            f"{label} returned no content blocks (stop_reason={message.stop_reason!r})"
        )
    text = "".join(block.text for block in message.content if block.type == "text")
    usage = message.usage
    return ChatResponse(
        text=text,
        usage=Usage(
            input_tokens=usage.input_tokens or 0,
            output_tokens=usage.output_tokens or 0,
            cache_read_tokens=usage.cache_read_input_tokens or 0,
            cache_write_tokens=usage.cache_creation_input_tokens or 0,
        ),
        stop_reason=message.stop_reason,
        model=label,
    )


def provider_error(
    exc: anthropic.AnthropicError, label: str
) -> ProviderError | ContextLimitReached:
    """What the SDK raised after its retries, as our typed failure.

    A context-length refusal is the model-side :class:`ContextLimitReached`;
    everything else is the infrastructure failure :class:`ProviderError`.
    """
    if isinstance(exc, anthropic.APIStatusError):
        too_long = context_limit_error(exc.status_code, exc.message, exc.body, label)
        if too_long is not None:
            return too_long
        return ProviderError(
            f"{label}: HTTP {exc.status_code}: {exc.message}", status_code=exc.status_code
        )
    if isinstance(exc, anthropic.APITimeoutError):
        return ProviderError(f"{label}: request timed out (after retries)", maybe_billed=True)
    if isinstance(exc, anthropic.APIConnectionError):
        return ProviderError(
            f"{label}: cannot connect: {exc.__cause__ or exc}", maybe_billed=not never_sent(exc)
        )
    return ProviderError(f"{label}: {type(exc).__name__}: {exc}")


class AnthropicModel:
    """A Claude model behind :class:`~codemonkeys.llm.types.Model`.

    The key and base URL are always passed explicitly, so the SDK never falls
    back to ``ANTHROPIC_*`` environment variables. The HTTP client is made on
    first use, inside the event loop that uses it.
    """

    def __init__(self, spec: ModelSpec, settings: ProviderSettings, api_key: str | None) -> None:
        self._spec = spec
        self._label = spec.label
        self._base_url = spec.base_url or settings.base_url or DEFAULT_BASE_URL
        self._settings = settings
        # A placeholder keeps the SDK off the environment; a real endpoint rejects it with a 401.
        self._api_key = api_key or "no-key-configured"
        self._client: anthropic.AsyncAnthropic | None = None

    @property
    def name(self) -> str:
        return self._label

    @property
    def client(self) -> anthropic.AsyncAnthropic:
        if self._client is None:
            self._client = anthropic.AsyncAnthropic(
                api_key=self._api_key,
                base_url=self._base_url,
                timeout=self._settings.timeout_s,
                max_retries=self._settings.max_retries,
            )
        return self._client

    async def complete(self, request: ChatRequest) -> ChatResponse:
        params = build_params(
            request, self._spec.name, send_temperature=self._settings.send_temperature
        )
        try:
            message = await self.client.messages.create(**params)
        except anthropic.AnthropicError as exc:
            raise provider_error(exc, self._label) from exc
        return parse_message(message, self._label)

    async def aclose(self) -> None:
        """Close the HTTP connections (the model can be used again afterwards)."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
