"""Prices and the cost of a call. An unpriced model costs ``None``, never zero."""

from __future__ import annotations

from collections.abc import Mapping

from ..config import Price
from .types import Usage

_PER_TOKEN = 1e-6


class PriceTable:
    """Looks up a model's price by full string, bare name, or longest listed prefix."""

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices = dict(prices)
        self._by_length = sorted(self._prices, key=len, reverse=True)
        self._memo: dict[str, Price | None] = {}

    def lookup(self, model: str) -> Price | None:
        if model not in self._memo:
            self._memo[model] = self._find(model)
        return self._memo[model]

    def _find(self, model: str) -> Price | None:
        provider, _, rest = model.partition(":")
        name = rest.partition("@")[0]
        # Offline doubles (scripted, oracle, oracle-noisy:P) are priced by family.
        family = provider.split("-")[0] if provider in ("scripted", "oracle", "oracle-noisy") else None
        for key in (model, name, family):
            if key and key in self._prices:
                return self._prices[key]
        for key in self._by_length:
            if name and name.startswith(key):
                return self._prices[key]
        return None

    def cost(self, model: str, usage: Usage) -> float | None:
        """USD for ``usage`` on ``model``; ``None`` when the model has no price."""
        price = self.lookup(model)
        if price is None:
            return None
        return price_cost(price, usage)

    def worst_case(self, model: str, prompt_tokens: int, max_output_tokens: int) -> float | None:
        """The most a call can cost: every prompt token uncached (or a cache write) and a full answer."""
        price = self.lookup(model)
        if price is None:
            return None
        prompt_price = max(price.input, price.cache_write if price.cache_write is not None else price.input)
        return (prompt_tokens * prompt_price + max_output_tokens * price.output) * _PER_TOKEN


def price_cost(price: Price, usage: Usage) -> float:
    """Cost of one call at ``price``; cache prices default to the input price."""
    cache_read = price.cache_read if price.cache_read is not None else price.input
    cache_write = price.cache_write if price.cache_write is not None else price.input
    return (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_read_tokens * cache_read
        + usage.cache_write_tokens * cache_write
    ) * _PER_TOKEN
