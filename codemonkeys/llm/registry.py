"""Turning model strings from the config into gateways, one per stage.

A model string names its provider: the SDK providers (``anthropic``,
``openai``, ``openai-compatible``) and the offline ones (``oracle``,
``oracle-noisy:P``, which answer from an instance's gold patch) are all built
here, from :data:`PROVIDERS`; nothing about oracles is wired into a run.
Limiters are shared per provider (rate limits are per account, not per stage);
the ledger and the price table are shared by all gateways of a run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Protocol

from ..config import Config, ProviderSettings
from ..errors import MissingCredentialsError, UnknownProviderError
from ..store.protocols import CallLedger
from .gateway import Gateway, Limiter, SpendGuard
from .pricing import PriceTable
from .spec import ModelSpec, parse_model_string
from .types import Model

STAGES = ("relevance", "ranking", "testing", "editing", "selection")

# Makes a model for specs whose provider is not an SDK provider (scripted, oracle...),
# given the stage and instance it answers for: an oracle answers from one instance's
# gold patch, so it is built per (stage, instance).
ExtraModelFactory = Callable[[ModelSpec, str, str | None], Model]

# Providers reached through a vendor SDK (they need keys and have prices); the others are doubles.
SDK_PROVIDERS = ("anthropic", "openai", "openai-compatible")


class ProviderBuilder(Protocol):
    """Makes the model of a spec for one stage (and instance, for models that answer per instance)."""

    def __call__(
        self, spec: ModelSpec, *, config: Config, api_key: str | None, stage: str, instance: Mapping[str, Any] | None
    ) -> Model: ...


# Provider name -> "module:function" of its ProviderBuilder, imported only when a run uses it.
PROVIDERS: Mapping[str, str] = MappingProxyType({
    "anthropic": "codemonkeys.llm.registry:build_sdk_model",
    "openai": "codemonkeys.llm.registry:build_sdk_model",
    "openai-compatible": "codemonkeys.llm.registry:build_sdk_model",
    "oracle": "codemonkeys.oracle:build_oracle",
    "oracle-noisy": "codemonkeys.oracle:build_oracle",
})
# Providers whose models answer for one instance: built per (stage, instance).
PER_INSTANCE = frozenset({"oracle", "oracle-noisy"})


def provider_settings(config: Config, provider: str) -> ProviderSettings:
    """Settings of a provider, with defaults for one the config does not list."""
    return config.providers.get(provider, ProviderSettings())


def required_secrets(config: Config, stages: tuple[str, ...] = STAGES) -> dict[str, str]:
    """Provider -> name of the environment variable holding its key, for the stages in use."""
    needed: dict[str, str] = {}
    for stage in stages:
        spec = parse_model_string(getattr(config.models, stage).model)
        settings = provider_settings(config, spec.provider)
        if settings.api_key_env:
            needed[spec.provider] = settings.api_key_env
    return needed


def resolve_secrets(config: Config, environ: Mapping[str, str], stages: tuple[str, ...] = STAGES) -> dict[str, str]:
    """API keys from ``environ`` (the CLI passes ``os.environ``); a missing one is a user error."""
    keys: dict[str, str] = {}
    for provider, variable in required_secrets(config, stages).items():
        value = environ.get(variable, "").strip()
        if not value:
            raise MissingCredentialsError(
                f"provider {provider!r} needs an API key: set {variable} "
                f"(or change providers.{provider}.api_key_env in the config)"
            )
        keys[provider] = value
    return keys


def check_prices(config: Config, stages: tuple[str, ...] = STAGES) -> None:
    """A budgeted run whose stages use a model without a price stops here, before any work.

    Raises :class:`~codemonkeys.errors.ConfigError` (one line) unless the model is
    priced (``pricing.<model>``, 0 for self-hosted) or ``budget.allow_unpriced`` is set.
    """
    from ..budget import check_priced

    prices = PriceTable(config.pricing)
    models = {getattr(config.models, stage).model for stage in stages}
    check_priced(config.budget, {model: prices.lookup(model) is not None for model in models})


def build_model(spec: ModelSpec, settings: ProviderSettings, api_key: str | None) -> Model:
    """The SDK-backed model for a spec; vendor SDKs are imported only here, lazily."""
    if spec.provider == "anthropic":
        from .providers.anthropic import AnthropicModel

        return AnthropicModel(spec, settings, api_key)
    if spec.provider in ("openai", "openai-compatible"):
        from .providers.openai import OpenAIModel

        return OpenAIModel(spec, settings, api_key)
    raise UnknownProviderError(f"provider {spec.provider!r} cannot be built from the config alone")


def build_sdk_model(
    spec: ModelSpec, *, config: Config, api_key: str | None, stage: str, instance: Mapping[str, Any] | None
) -> Model:
    """:data:`PROVIDERS` entry of the SDK providers."""
    return build_model(spec, provider_settings(config, spec.provider), api_key)


def provider_builder(provider: str) -> ProviderBuilder | None:
    """The builder a provider name is registered with, ``None`` for an unknown provider."""
    target = PROVIDERS.get(provider)
    if target is None:
        return None
    module, _, function = target.partition(":")
    builder: ProviderBuilder = getattr(importlib.import_module(module), function)
    return builder


InstanceLookup = Callable[[str], Mapping[str, Any]]
"""An instance's dataset row by id (the run store's ``instance_data``)."""


class ModelHub:
    """All gateways of a run, built once and shared by its stages."""

    def __init__(
        self,
        config: Config,
        ledger: CallLedger,
        secrets: Mapping[str, str],
        *,
        budget: SpendGuard | None = None,
        extra_models: ExtraModelFactory | None = None,
        limiter_factory: Callable[[ProviderSettings], Limiter] | None = None,
        instances: InstanceLookup | None = None,
    ) -> None:
        self._config = config
        self._ledger = ledger
        self._secrets = dict(secrets)
        self._budget = budget
        self._extra = extra_models
        self._instances = instances or getattr(ledger, "instance_data", None)
        self._prices = PriceTable(config.pricing)
        self._limiter_factory = limiter_factory or _default_limiter
        self._limiters: dict[str, Limiter] = {}
        self._gateways: dict[tuple[str, str | None], Gateway] = {}

    @property
    def prices(self) -> PriceTable:
        return self._prices

    def spec(self, stage: str) -> ModelSpec:
        """The parsed model string configured for ``stage``."""
        if stage not in STAGES:
            raise UnknownProviderError(f"no model setting for stage {stage!r}")
        return parse_model_string(getattr(self._config.models, stage).model)

    def gateway(self, stage: str, instance_id: str | None = None) -> Gateway:
        """The gateway of ``stage`` (one of :data:`STAGES`), for ``instance_id`` when the model needs it.

        SDK-backed gateways are shared by all instances; offline doubles are
        made per instance.
        """
        spec = self.spec(stage)
        key = (stage, instance_id if spec.provider in PER_INSTANCE or spec.provider not in PROVIDERS else None)
        if key not in self._gateways:
            self._gateways[key] = self._make(spec, stage, instance_id)
        return self._gateways[key]

    def _make(self, spec: ModelSpec, stage: str, instance_id: str | None) -> Gateway:
        settings = provider_settings(self._config, spec.provider)
        builder = provider_builder(spec.provider)
        if builder is not None:
            instance = None
            if spec.provider in PER_INSTANCE:
                if instance_id is None or self._instances is None:
                    raise UnknownProviderError(f"model {spec.label!r} answers for one instance; stage {stage} gave none")
                instance = self._instances(instance_id)
            model = builder(
                spec, config=self._config, api_key=self._secrets.get(spec.provider), stage=stage, instance=instance
            )
        elif self._extra is not None:
            model = self._extra(spec, stage, instance_id)
        else:
            raise UnknownProviderError(f"model {spec.label!r} needs a factory this run does not have")
        if spec.provider not in self._limiters:
            self._limiters[spec.provider] = self._limiter_factory(settings)
        return Gateway(
            model,
            self._ledger,
            self._prices,
            limiter=self._limiters[spec.provider],
            budget=self._budget,
            use_cache=self._config.cache.responses,
        )

    async def aclose(self) -> None:
        """Close the SDK clients' connection pools; call once, before the run's event loop ends."""
        for gateway in self._gateways.values():
            close = getattr(gateway.model, "aclose", None)
            if close is not None:
                await close()


def _default_limiter(settings: ProviderSettings) -> Limiter:
    from .limiter import ProviderLimiter

    return ProviderLimiter(settings.limits)
