"""The context stage through the real Anthropic SDK, in its own process, so a test can kill -9 it.

Usage: python books_crash_driver.py RUN_DIR REPO COMMIT ANTHROPIC_BASE_URL (see test_budget_crash.py).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from codemonkeys.budget import BudgetGuard
from codemonkeys.config import load_config
from codemonkeys.context.batch import build_stage
from codemonkeys.context.stage import ContextTask
from codemonkeys.llm.registry import ModelHub, check_prices
from codemonkeys.store import RunStore

ISSUE = "parse_date crashes on dates with a time part, e.g. '2020-01-02T10:00'."


async def main() -> None:
    run_dir, repo, commit, url = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    config = load_config("verified", [
        f"models.relevance.model=anthropic:claude-sonnet-4-5@{url}",
        f"models.ranking.model=anthropic:claude-sonnet-4-5@{url}",
        "providers.anthropic.max_retries=0", "context.max_file_tokens=1000", "budget.total_usd=5",
    ])
    check_prices(config, ("relevance", "ranking"))
    with RunStore.open(run_dir) as store:
        hub = ModelHub(config, store, {"anthropic": "test-key"}, budget=BudgetGuard.for_run(config.budget, store))
        try:
            await build_stage(config, hub, store).run(ContextTask("o__pkg-1", ISSUE, repo, commit))
        finally:
            await hub.aclose()


if __name__ == "__main__":
    asyncio.run(main())
