"""Model strings: ``provider:name[@base_url]``.

Examples: ``anthropic:claude-sonnet-4-5``, ``openai:gpt-4.1``,
``openai-compatible:Qwen/Qwen2.5-Coder-32B-Instruct@http://host:8000/v1``,
``oracle``, ``oracle-noisy:0.5``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnknownProviderError

PROVIDERS = ("anthropic", "openai", "openai-compatible", "scripted", "oracle", "oracle-noisy")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A parsed model string."""

    provider: str
    name: str
    base_url: str | None = None

    @property
    def label(self) -> str:
        """The string as written back (stable: used in cache keys and the ledger)."""
        base = f"{self.provider}:{self.name}" if self.name else self.provider
        return f"{base}@{self.base_url}" if self.base_url else base


def parse_model_string(text: str) -> ModelSpec:
    """Parse and check a model string; an unknown provider is a user error."""
    text = text.strip()
    provider, sep, rest = text.partition(":")
    if provider in ("oracle", "scripted") and not sep:
        return ModelSpec(provider, "")
    if not sep or not rest:
        raise UnknownProviderError(
            f"model {text!r} must look like provider:name (providers: {', '.join(PROVIDERS)})"
        )
    if provider not in PROVIDERS:
        raise UnknownProviderError(f"unknown provider {provider!r} in model {text!r} (known: {', '.join(PROVIDERS)})")
    name, at, base_url = rest.partition("@")
    if provider == "openai-compatible" and not at:
        raise UnknownProviderError(
            f"model {text!r}: openai-compatible needs a server, e.g. openai-compatible:NAME@http://host:8000/v1"
        )
    if at and not base_url.startswith(("http://", "https://")):
        raise UnknownProviderError(f"model {text!r}: base URL {base_url!r} must start with http:// or https://")
    if provider == "oracle-noisy":
        try:
            fraction = float(name)
        except ValueError:
            fraction = -1.0
        if not 0.0 <= fraction <= 1.0:
            raise UnknownProviderError(f"model {text!r}: oracle-noisy takes a fraction in [0, 1], e.g. oracle-noisy:0.5")
    return ModelSpec(provider, name, base_url or None)
