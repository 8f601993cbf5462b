"""Plain records the store reads and writes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One LLM call as the ledger keeps it; ``cost_usd`` is ``None`` when the price is unknown.

    ``state`` is ``started`` from just before the request is sent until its
    answer (or error) is recorded (``settled``); a row left ``started`` by a
    killed or cancelled process counts at ``reserved_usd``, its worst case,
    until a later attempt gets the same request answered and prices it
    (``retried``: the first attempt, booked at what its retry cost).
    """

    stage: str
    instance_id: str | None
    trajectory: str | None
    request_hash: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None
    latency_s: float = 0.0
    cached: bool = False
    error_kind: str | None = None
    error: str | None = None
    ts: float = 0.0
    state: str = "settled"
    reserved_usd: float | None = None
    # The provider sent no usage: the tokens are the offline counter's estimate.
    usage_estimated: bool = False


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """Spending aggregated over a group (stage, model, instance...)."""

    group: tuple[str | None, ...]
    calls: int
    cached_calls: int
    failed_calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float
    unpriced_calls: int
    # Calls whose answer is unknown (killed or cancelled in flight), counted at their worst case.
    started_calls: int = 0

    def as_dict(self, names: tuple[str, ...]) -> dict[str, object]:
        data: dict[str, object] = dict(zip(names, self.group, strict=True))
        data.update(
            calls=self.calls,
            cached_calls=self.cached_calls,
            failed_calls=self.failed_calls,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
            cost_usd=round(self.cost_usd, 6),
            unpriced_calls=self.unpriced_calls,
            started_calls=self.started_calls,
        )
        return data


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """One saved turn of a trajectory; ``data`` is JSON the stage owns."""

    trajectory_id: str
    turn: int
    data: str


@dataclass(frozen=True, slots=True)
class TrajectoryRecord:
    """A trajectory's summary row; ``state`` is JSON the stage owns."""

    trajectory_id: str
    instance_id: str
    kind: str
    index: int
    status: str
    failure_kind: str | None = None
    failure: str | None = None
    state: str = "{}"


@dataclass(frozen=True, slots=True)
class TestExecution:
    """One cell of the test x patch matrix, keyed so it is never run twice."""

    __test__ = False  # not a pytest class

    env_key: str
    patch_hash: str
    test_hash: str
    attempt: int
    exit_code: int | None
    output: str
    duration_s: float
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class ContextDecision:
    """One file's relevance decision for one instance, keyed by content, model and prompt version.

    ``status`` is ``scored`` (then ``relevant`` is set), ``parse_failure`` (the
    model's answers could not be read: never taken as "not relevant") or
    ``error`` (infrastructure; retried by a rerun). ``detail`` holds the error
    or the unreadable answer.
    """

    instance_id: str
    path: str
    content_hash: str
    model: str
    prompt_version: str
    status: str
    relevant: bool | None = None
    summary: str | None = None
    tokens: int | None = None
    detail: str | None = None
