"""Running the context stage over many instances: bounded concurrency, failures kept apart.

Also builds the stage from a config and a gateway source, so the CLI, the
pipeline and tests wire it the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..config import Config
from ..errors import failure_kind
from ..store.protocols import ContextStore
from .files import Tokenizer, model_tokenizer
from .packing import WindowReserve
from .ranking import RankingPrompt
from .relevance import RelevancePrompt
from .result import ContextResult
from .stage import ContextStage, ContextTask, GatewaySource, ProgressEvent

log = logging.getLogger(__name__)


def build_stage(
    config: Config,
    models: GatewaySource,
    store: ContextStore,
    *,
    progress: Callable[[ProgressEvent], None] | None = None,
    tokenizer: Tokenizer | None = None,
    pack_tokenizer: Tokenizer | None = None,
) -> ContextStage:
    """The stage as a run configures it.

    Files are counted with the relevance model's tokenizer (its context
    window bounds ``max_file_tokens``) and packed with the editing model's
    (the packed context is that model's prompt). Packing is clamped so the
    editing conversation (first prompt, ``generation.max_iterations`` turns,
    the last answer) fits the editing model's window; selection and testing
    never see the packed files.
    """
    relevance, ranking, editing = config.models.relevance, config.models.ranking, config.models.editing
    reserve = WindowReserve(
        window=editing.context_window,
        max_output_tokens=editing.max_output_tokens,
        turns=config.generation.max_iterations,
        turn_tokens=config.context.turn_reserve_tokens,
    )
    return ContextStage(
        config=config.context,
        models=models,
        store=store,
        relevance_prompt=RelevancePrompt.load(
            max_tokens=relevance.max_output_tokens, temperature=relevance.temperature
        ),
        ranking_prompt=RankingPrompt.load(
            max_tokens=ranking.max_output_tokens, temperature=ranking.temperature
        ),
        tokenizer=tokenizer or model_tokenizer(relevance.model),
        pack_tokenizer=pack_tokenizer or model_tokenizer(config.models.editing.model),
        progress=progress,
        reserve=reserve,
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """One instance's end: its result, or the failure that stopped it."""

    instance_id: str
    result: ContextResult | None = None
    failure_kind: str | None = None
    failure: str | None = None


async def run_many(
    stage: ContextStage, tasks: Sequence[ContextTask], *, max_concurrent: int
) -> list[Outcome]:
    """Run ``tasks`` at most ``max_concurrent`` at a time; one failing instance never stops the rest."""
    slots = asyncio.Semaphore(max_concurrent)

    async def one(task: ContextTask) -> Outcome:
        async with slots:
            try:
                return Outcome(task.instance_id, result=await stage.run(task))
            except Exception as exc:  # noqa: BLE001 - the instance boundary: record and go on
                log.error("context of %s failed: %s: %s", task.instance_id, type(exc).__name__, exc)
                return Outcome(
                    task.instance_id, failure_kind=str(failure_kind(exc)), failure=str(exc)
                )

    return list(await asyncio.gather(*(one(task) for task in tasks)))
