"""The books never undercount: reservations bound what a call costs, and a call is on the books before it is sent.

Real SDK clients against the loopback server, whose usage is the project's own
tokenizer's count (cl100k), on this repository's source files as prompts.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from codemonkeys.budget import BudgetGuard
from codemonkeys.config import BudgetConfig, Price, ProviderSettings
from codemonkeys.errors import BudgetExceeded
from codemonkeys.llm.gateway import Gateway, approx_tokens
from codemonkeys.llm.pricing import PriceTable
from codemonkeys.llm.providers.anthropic import AnthropicModel
from codemonkeys.llm.providers.openai import OpenAIModel
from codemonkeys.llm.spec import parse_model_string
from codemonkeys.llm.tokens import count_tokens
from codemonkeys.llm.types import CallTag, ChatRequest, Message, Model
from codemonkeys.store import RunStore
from codemonkeys.testing.fake_server import FakeLLMServer

PACKAGE = Path(__file__).resolve().parents[1] / "codemonkeys"
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.stat().st_size > 2000)
PRICES = PriceTable({
    "claude-test": Price(input=3.0, output=15.0, cache_read=0.3, cache_write=3.75),
    "gpt-test": Price(input=2.0, output=8.0, cache_read=0.5),
})
SYSTEM = "You read one file of a repository and judge whether it is relevant to the issue."


def _request(path: Path, sample: int = 0) -> ChatRequest:
    text = path.read_text()
    return ChatRequest(
        messages=(Message("user", f"<issue>fix it</issue>", cache=True), Message("user", f'<file path="{path.name}">\n{text}')),
        system=SYSTEM,
        system_cache=True,
        # The echo answer is the last message, cut at max_tokens: for most files a full-length answer.
        max_tokens=400,
        sample=sample,
    )


def _models(server: FakeLLMServer) -> list[Model]:
    return [
        AnthropicModel(parse_model_string("anthropic:claude-test"), ProviderSettings(base_url=server.anthropic_base_url, max_retries=0), "k"),
        OpenAIModel(parse_model_string("openai:gpt-test"), ProviderSettings(base_url=server.openai_base_url, max_retries=0), "k"),
    ]


async def test_a_reservation_bounds_the_real_cost_of_every_source_file(tmp_path: Path) -> None:
    assert len(SOURCES) > 40
    with FakeLLMServer() as server, RunStore.open(tmp_path / "run") as store:
        for model in _models(server):
            gateway = Gateway(model, store, PRICES, use_cache=False)
            for path in SOURCES:
                await gateway.complete(_request(path), CallTag("relevance", "i", path.name))
            await model.aclose()
        calls = store.calls()
    assert len(calls) == 2 * len(SOURCES)
    for call in calls:
        assert call.state == "settled" and call.cost_usd is not None and call.reserved_usd is not None
        assert call.cost_usd <= call.reserved_usd, (call.model, call.trajectory, call.cost_usd, call.reserved_usd)
    # The counter matters: on many of these files 4 characters per token counts fewer tokens than
    # the server bills, so a reservation from it would not be a bound.
    texts = [path.read_text() for path in SOURCES]
    assert sum(approx_tokens(t) < count_tokens(t, "openai:gpt-test") for t in texts) >= 5


async def test_spend_never_passes_the_budget_with_calls_in_flight(tmp_path: Path) -> None:
    budget = 0.05
    guard = BudgetGuard(BudgetConfig(total_usd=budget))
    refused = 0
    with FakeLLMServer(latency_s=0.02) as server, RunStore.open(tmp_path / "run") as store:
        model = _models(server)[0]
        gateway = Gateway(model, store, PRICES, budget=guard, use_cache=False)

        async def one(path: Path, sample: int) -> None:
            nonlocal refused
            try:
                await gateway.complete(_request(path, sample), CallTag("relevance", "i", f"{path.name}-{sample}"))
            except BudgetExceeded:
                refused += 1

        await asyncio.gather(*(one(path, n) for n in range(3) for path in SOURCES))
        await model.aclose()
        spent = store.total_cost()
    assert refused > 0  # the budget was the limit
    assert 0.5 * budget < spent <= budget + 1e-12
    assert guard.spent_total == pytest.approx(spent)


async def test_a_call_cancelled_in_flight_counts_at_its_worst_case_until_a_retry_prices_it(tmp_path: Path) -> None:
    request = _request(SOURCES[0])
    tag = CallTag("relevance", "i", "t")
    with FakeLLMServer() as server, RunStore.open(tmp_path / "run") as store:
        server.stall_next(5.0)
        model = _models(server)[0]
        guard = BudgetGuard(BudgetConfig(total_usd=10.0))
        task = asyncio.ensure_future(Gateway(model, store, PRICES, budget=guard).complete(request, tag))
        while server.request_count == 0:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        [started] = store.calls()
        assert started.state == "started" and started.reserved_usd is not None and started.reserved_usd > 0
        assert store.total_cost() == pytest.approx(started.reserved_usd)  # booked at its worst case
        assert store.ledger(group_by=())[0].started_calls == 1
        assert guard.spent_total == pytest.approx(started.reserved_usd)  # and held against the budget
        assert BudgetGuard.for_run(BudgetConfig(total_usd=10.0), store).spent_total == pytest.approx(started.reserved_usd)

        # A later attempt (a resume) is answered by the provider: both attempts are on the books.
        response = await Gateway(model, store, PRICES).complete(request, tag)
        await model.aclose()
        first, retry = store.calls()
    assert not response.cached
    assert (first.state, retry.state) == ("retried", "settled")
    assert first.request_hash == retry.request_hash and first.cost_usd == retry.cost_usd
    assert retry.cost_usd is not None and retry.cost_usd < (started.reserved_usd or 0)
    with RunStore.open(tmp_path / "run") as store:
        assert store.total_cost() == pytest.approx(2 * retry.cost_usd)


async def test_a_call_cancelled_before_it_is_sent_costs_nothing(tmp_path: Path) -> None:
    class Closed:
        def slot(self, tokens: int):  # type: ignore[no-untyped-def]
            return _never()

    with FakeLLMServer() as server, RunStore.open(tmp_path / "run") as store:
        model = _models(server)[0]
        task = asyncio.ensure_future(Gateway(model, store, PRICES, limiter=Closed()).complete(_request(SOURCES[0]), CallTag("relevance")))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await model.aclose()
        [call] = store.calls()
        assert server.request_count == 0
        assert call.state == "settled" and call.error_kind == "cancelled" and store.total_cost() == 0.0


class _never:
    async def __aenter__(self) -> None:
        await asyncio.Event().wait()

    async def __aexit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize("provider", [0, 1], ids=["anthropic", "openai"])
async def test_a_call_that_timed_out_is_booked_at_its_worst_case(tmp_path: Path, provider: int) -> None:
    """The provider got the request and its answer was lost: it may have billed it, so never $0."""
    from codemonkeys.errors import ProviderError

    request = _request(SOURCES[0])
    with FakeLLMServer() as server, RunStore.open(tmp_path / "run") as store:
        model: AnthropicModel | OpenAIModel
        if provider == 0:
            settings = ProviderSettings(base_url=server.anthropic_base_url, max_retries=0, timeout_s=0.3)
            model = AnthropicModel(parse_model_string("anthropic:claude-test"), settings, "k")
        else:
            settings = ProviderSettings(base_url=server.openai_base_url, max_retries=0, timeout_s=0.3)
            model = OpenAIModel(parse_model_string("openai:gpt-test"), settings, "k")
        guard = BudgetGuard(BudgetConfig(total_usd=10.0))
        server.stall_next(2.0)
        with pytest.raises(ProviderError, match="timed out"):
            await Gateway(model, store, PRICES, budget=guard).complete(request, CallTag("relevance", "i", "t"))
        await model.aclose()
        [call] = store.calls()
    assert call.error_kind == "infra" and call.reserved_usd is not None and call.reserved_usd > 0
    assert call.cost_usd == pytest.approx(call.reserved_usd) and "may have been billed" in (call.error or "")
    assert guard.spent_total == pytest.approx(call.reserved_usd)


async def test_a_call_that_never_connected_costs_nothing(tmp_path: Path) -> None:
    from codemonkeys.errors import ProviderError

    with FakeLLMServer() as server:
        model = _models(server)[0]
    guard = BudgetGuard(BudgetConfig(total_usd=10.0))
    with RunStore.open(tmp_path / "run") as store:
        with pytest.raises(ProviderError, match="cannot connect"):
            await Gateway(model, store, PRICES, budget=guard).complete(_request(SOURCES[0]), CallTag("relevance", "i", "t"))
        await model.aclose()  # type: ignore[attr-defined]
        [call] = store.calls()
    assert call.cost_usd is None and guard.spent_total == 0.0
