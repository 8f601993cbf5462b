"""``run --estimate``: tokens and dollars per stage before anything is spent.

Relevance is counted exactly from git (every candidate file, tokenized). The
later stages depend on model answers, so they are modelled: ranking from the
relevant-file share (its output limit grows with the relevant files),
generation from a token model of one trajectory
(:func:`~.planner.modelled_trajectory_cost`) over the context the ranker aims
for (``context.target_tokens``, at most the packing cap: ``budget_tokens``
clamped to the editing model's window from the shipped table), selection from
one selection trajectory over the top-k diffs. When the run directory already
holds finished instances, their mean cost per stage replaces the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import mean

from rich.console import Console
from rich.table import Table

from ..config import Config
from ..context.estimate import estimate_instance
from ..context.files import FileFilter, MemoryTokenCache, model_tokenizer
from ..context.packing import WindowReserve, packing_budget, window_limit
from ..context.ranking import ranking_output_tokens
from ..context.relevance import RelevancePrompt
from ..context.stage import ContextTask
from ..llm.pricing import PriceTable
from ..llm.windows import NoProbe, resolve_context_windows
from ..store import DB_NAME, RunStore
from ..swebench.instances import Instance
from .build import repo_source
from .planner import modelled_trajectory_cost

# Share of files judged relevant, and summary tokens per relevant file (typical of the paper's runs).
RELEVANT_SHARE = 0.05
SUMMARY_TOKENS = 250
SELECTION_PROMPT_TOKENS = 30_000
SELECTION_OUTPUT_TOKENS = 2_000


@dataclass(frozen=True)
class StageEstimate:
    stage: str
    prompt_tokens: int
    usd: float | None
    source: str
    instances: int = 1

    @property
    def prompt_tokens_per_instance(self) -> int:
        return round(self.prompt_tokens / max(1, self.instances))

    @property
    def usd_per_instance(self) -> float | None:
        return None if self.usd is None else self.usd / max(1, self.instances)


def _cost(prices: PriceTable, model: str, prompt: int, output: int) -> float | None:
    price = prices.lookup(model)
    if price is None:
        return None
    return (prompt * price.input + output * price.output) * 1e-6


def _ledger_means(run_dir: Path) -> dict[str, float]:
    """Mean cost per finished instance and stage in an existing run directory."""
    if not (Path(run_dir) / DB_NAME).is_file():
        return {}
    with RunStore.open_read_only(run_dir) as store:
        done = {row["instance_id"] for row in store.instance_states() if row["status"] == "done"}
        per_stage: dict[str, list[float]] = {}
        for row in store.ledger(group_by=("instance_id", "stage")):
            if row.group[0] in done:
                per_stage.setdefault(str(row.group[1]), []).append(row.cost_usd)
    return {stage: mean(values) for stage, values in per_stage.items() if values}


def estimate_run(config: Config, instances: list[Instance], run_dir: Path) -> list[StageEstimate]:
    """Per-stage projections summed over ``instances``."""
    config, _ = resolve_context_windows(config, NoProbe())  # the shipped table: no server is asked
    prices = PriceTable(config.pricing)
    models = config.models
    editing = models.editing
    reserve = WindowReserve(
        window=editing.context_window, max_output_tokens=editing.max_output_tokens,
        turns=config.generation.max_iterations, turn_tokens=config.context.turn_reserve_tokens,
    )
    context_tokens = 0
    repos = repo_source(config)
    relevance_prompt = RelevancePrompt.load(max_tokens=models.relevance.max_output_tokens, temperature=models.relevance.temperature)
    tokenizer = model_tokenizer(models.relevance.model)
    cache = MemoryTokenCache()
    files = prompt = ranking_output = 0
    relevance_usd: float | None = 0.0
    for instance in instances:
        cap = packing_budget(config.context.budget_tokens, window_limit(reserve, tokenizer.count_many([instance.problem_statement])[0]))
        context_tokens += min(config.context.target_tokens, cap)
        task = ContextTask(instance.instance_id, instance.problem_statement, repos.ensure_commit(instance.repo, instance.base_commit), instance.base_commit)
        estimate = estimate_instance(
            task, file_filter=FileFilter.from_config(config.context), tokenizer=tokenizer, cache=cache,
            prompt=relevance_prompt, prices=prices, model=models.relevance.model,
            max_file_tokens=config.context.max_file_tokens, ranking_runs=config.context.ranking_runs,
        )
        files += estimate.files
        relevant = round(estimate.files * RELEVANT_SHARE)
        ranking_output += ranking_output_tokens(models.ranking.max_output_tokens, relevant) * config.context.ranking_runs
        prompt += estimate.prompt_tokens
        relevance_usd = None if relevance_usd is None or estimate.cached_prefix_usd is None else relevance_usd + estimate.cached_prefix_usd
    n = len(instances)
    ranking_prompt = int(files * RELEVANT_SHARE * SUMMARY_TOKENS) * config.context.ranking_runs
    ranking_usd = _cost(prices, models.ranking.model, ranking_prompt, ranking_output)
    context = context_tokens // max(1, n)  # the packed context one instance is expected to get
    per_trajectory = modelled_trajectory_cost(config, prices, context)
    trajectories = config.generation.trajectories * n
    generation_usd = None if per_trajectory is None else per_trajectory * trajectories
    generation_prompt = trajectories * (context * config.generation.max_iterations // 2)
    selection_calls = max(1, config.selection.max_turns // 2) * n
    selection_usd = _cost(prices, models.selection.model, SELECTION_PROMPT_TOKENS * selection_calls, SELECTION_OUTPUT_TOKENS * selection_calls)
    rows = [
        StageEstimate("relevance", prompt, relevance_usd, f"{files:,} files (git)"),
        StageEstimate("ranking", ranking_prompt, ranking_usd, f"{RELEVANT_SHARE:.0%} relevant (model)"),
        StageEstimate("generation", generation_prompt, generation_usd, f"{trajectories} traj., {context // 1000}k ctx"),
        StageEstimate("selection", SELECTION_PROMPT_TOKENS * selection_calls, selection_usd, "1 trajectory/inst"),
    ]
    means = _ledger_means(run_dir)
    stage_of = {"relevance": ("relevance",), "ranking": ("ranking",), "generation": ("testing", "editing"), "selection": ("selection",)}
    refined = []
    for row in rows:
        known = [means[s] for s in stage_of[row.stage] if s in means]
        if known:
            refined.append(StageEstimate(row.stage, row.prompt_tokens, sum(known) * n, "this run's mean", n))
        else:
            refined.append(StageEstimate(row.stage, row.prompt_tokens, row.usd, row.source, n))
    return refined


def print_estimate(config: Config, instances: list[Instance], run_dir: Path) -> None:
    rows = estimate_run(config, instances, run_dir)
    n = len(instances)
    table = Table(title=f"projected cost of {n} instance(s) (no model called)")
    for column in ("stage", "tokens/inst", "$/inst", "$ total", "basis"):
        table.add_column(column, justify="left" if column in ("stage", "basis") else "right")

    def money(value: float | None) -> str:
        return "unpriced" if value is None else f"{value:,.2f}"

    for row in rows:
        table.add_row(row.stage, f"{row.prompt_tokens_per_instance:,}", money(row.usd_per_instance), money(row.usd), row.source)
    known = [row.usd for row in rows if row.usd is not None]
    total_tokens = sum(r.prompt_tokens for r in rows)
    table.add_row(
        "total", f"{round(total_tokens / max(1, n)):,}", f"{sum(known) / max(1, n):,.2f}", f"{sum(known):,.2f}",
        f"{total_tokens / 1e6:,.1f}M tokens", style="bold",
    )
    unpriced = [row.stage for row in rows if row.usd is None]
    if unpriced:
        table.caption = f"totals leave out unpriced stages: {', '.join(unpriced)}"
    Console().print(table)
