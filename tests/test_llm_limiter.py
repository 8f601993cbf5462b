"""The provider limiter: sliding-window caps on a virtual clock, in-flight caps on the real loop."""

from __future__ import annotations

import asyncio

import pytest

from codemonkeys.config import ProviderLimits
from codemonkeys.llm.limiter import ProviderLimiter, SlidingWindow


class VirtualClock:
    """Time that passes only when the limiter sleeps (only the head of its queue ever does)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def limiter(clock: VirtualClock, **limits: int) -> ProviderLimiter:
    return ProviderLimiter(
        ProviderLimits(**{"max_in_flight": 1000, **limits}), clock=clock, sleep=clock.sleep
    )


async def admit_all(
    lim: ProviderLimiter, clock: VirtualClock, sizes: list[int]
) -> list[tuple[float, int]]:
    """Start one call per size at once; return (admission time, size) in admission order."""
    admitted: list[tuple[float, int]] = []

    async def call(size: int) -> None:
        async with lim.slot(size):
            admitted.append((clock(), size))

    await asyncio.gather(*(call(size) for size in sizes))
    return admitted


def max_in_any_window(admitted: list[tuple[float, int]], period: float = 60.0) -> int:
    return max(sum(size for t, size in admitted if end - period < t <= end) for end, _ in admitted)


# --- the window itself ---------------------------------------------------------------


def test_window_wait_times() -> None:
    window = SlidingWindow(capacity=100, period=60.0)
    assert window.wait_time(0.0, 60) == 0.0
    window.add(0.0, 60)
    window.add(10.0, 30)
    assert window.wait_time(10.0, 10) == 0.0
    assert window.wait_time(10.0, 20) == 50.0  # the grant of t=0 must leave first
    assert window.wait_time(10.0, 80) == 60.0  # both must leave
    assert window.wait_time(10.0, 500) == 60.0  # bigger than the cap: once the window is empty
    assert window.wait_time(70.0, 100) == 0.0
    assert window.total == 0


def test_window_adjust_only_counts_live_grants() -> None:
    window = SlidingWindow(capacity=100, period=60.0)
    grant = window.add(0.0, 90)
    window.adjust(grant, 20)
    assert window.total == 20
    window.wait_time(61.0, 1)  # expires the grant
    window.adjust(grant, 50)
    assert window.total == 0


# --- per-minute caps on a virtual clock ------------------------------------------------


async def test_tokens_per_minute_cap_holds() -> None:
    clock = VirtualClock()
    admitted = await admit_all(limiter(clock, tokens_per_minute=1000), clock, [100] * 30)
    assert [t for t, _ in admitted] == [0.0] * 10 + [60.0] * 10 + [120.0] * 10
    assert max_in_any_window(admitted) <= 1000


async def test_tokens_per_minute_cap_with_uneven_sizes() -> None:
    clock = VirtualClock()
    sizes = [370, 120, 640, 90, 510, 260, 800, 30, 450, 700, 150, 999]
    admitted = await admit_all(limiter(clock, tokens_per_minute=1000), clock, sizes)
    assert [size for _, size in admitted] == sizes  # first come, first served
    assert max_in_any_window(admitted) <= 1000
    assert clock.now < 60.0 * len(sizes)  # and it does make progress


async def test_requests_per_minute_cap_holds() -> None:
    clock = VirtualClock()
    admitted = await admit_all(limiter(clock, requests_per_minute=5), clock, [1] * 12)
    assert [t for t, _ in admitted] == [0.0] * 5 + [60.0] * 5 + [120.0] * 2


async def test_request_bigger_than_the_cap_goes_through_alone() -> None:
    clock = VirtualClock()
    admitted = await admit_all(limiter(clock, tokens_per_minute=1000), clock, [300, 5000, 100])
    assert admitted == [(0.0, 300), (60.0, 5000), (120.0, 100)]


async def test_queue_is_fair_small_requests_do_not_overtake() -> None:
    clock = VirtualClock()
    admitted = await admit_all(limiter(clock, tokens_per_minute=1000), clock, [900, 500, 50])
    assert admitted == [(0.0, 900), (60.0, 500), (60.0, 50)]


async def test_settling_actual_usage_frees_the_window() -> None:
    clock = VirtualClock()
    lim = limiter(clock, tokens_per_minute=1000)
    async with lim.slot(800) as permit:
        permit.settle(100)
    async with lim.slot(800):
        assert clock() == 0.0  # 100 + 800 fit: no wait


async def test_unlimited_limiter_never_sleeps() -> None:
    clock = VirtualClock()
    admitted = await admit_all(limiter(clock), clock, [10**9] * 5)
    assert len(admitted) == 5 and clock.sleeps == []


# --- in-flight cap and cancellation on the real loop --------------------------------


async def test_in_flight_cap() -> None:
    lim = ProviderLimiter(ProviderLimits(max_in_flight=3))
    inside = peak = 0
    release = asyncio.Event()

    async def call() -> None:
        nonlocal inside, peak
        async with lim.slot(1):
            inside += 1
            peak = max(peak, inside)
            await release.wait()
            inside -= 1

    tasks = [asyncio.create_task(call()) for _ in range(10)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert inside == 3
    release.set()
    await asyncio.gather(*tasks)
    assert peak == 3


async def test_cancelled_waiter_gives_back_its_in_flight_slot() -> None:
    clock = VirtualClock()
    forever = asyncio.Event()

    async def blocked_sleep(seconds: float) -> None:
        await forever.wait()

    lim = ProviderLimiter(
        ProviderLimits(max_in_flight=1, tokens_per_minute=100), clock=clock, sleep=blocked_sleep
    )
    async with lim.slot(100):
        pass
    waiter = asyncio.create_task(lim.slot(100).__aenter__())
    for _ in range(3):
        await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    clock.now = 61.0
    # Deadlock guard only: the in-flight slot must be free again.
    async with asyncio.timeout(5):
        async with lim.slot(100):
            pass
