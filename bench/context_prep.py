"""How much reading every file costs to prepare, and how big its prompts are.

For every dev instance of one repo (default: django/django in
``verified_dev.jsonl``) with a local git mirror: enumerate the candidate files
at the base commit, count their tokens and the relevance prompts' tokens,
exactly as ``codemonkeys context --estimate`` does, with one token-count
store shared by the instances (a RunStore in a temporary directory, so the
SQLite cost is included): files unchanged across instances are tokenized
once. Prints per instance: files (ours, and with the paper's filter that only
looked at the first path component), blobs tokenized now, prompt tokens, the
shared-prefix share, and seconds; then means per repo and over all.

The shared prefix of a call is the instructions (shared by every call of the
repo) plus the issue (shared by the instance's calls). Target: under 5 s per
django instance (enumeration + tokenization).

    python bench/context_prep.py [--repo django/django|all] [--dataset FILE] [--mirror-dir DIR] [--limit N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from codemonkeys.config import load_config
from codemonkeys.context.estimate import InstanceEstimate, estimate_instance
from codemonkeys.context.files import FileFilter, model_tokenizer
from codemonkeys.context.gitread import GitObjects
from codemonkeys.context.relevance import RelevancePrompt
from codemonkeys.context.stage import ContextTask
from codemonkeys.llm.pricing import PriceTable
from codemonkeys.store import RunStore
from codemonkeys.swebench.instances import Instance, load_instances
from codemonkeys.swebench.repo import RepoSource

HERE = Path(__file__).resolve().parent
PAPER_TOKENS_PER_INSTANCE = 2_940_000


def paper_filter_count(repo: Path, commit: str, extensions: tuple[str, ...]) -> int:
    """Files the paper's filter keeps: the extension, and a first path component that is not a test dir."""
    with GitObjects(repo) as objects:
        entries = objects.list_files(commit)
    return sum(
        1
        for e in entries
        if e.path.endswith(extensions) and e.path.split("/")[0] not in ("tests", "test", "testing")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default="django/django", help="owner/name, or 'all'")
    parser.add_argument(
        "--dataset",
        type=Path,
        default=HERE.parent.parent / "shared/data/swebench/verified_dev.jsonl",
    )
    parser.add_argument("--mirror-dir", type=Path, default=Path("/work/mirrors"))
    parser.add_argument("--config", default="verified")
    parser.add_argument("--limit", type=int, default=None, help="at most N instances per repo")
    args = parser.parse_args()

    config = load_config(args.config)
    relevance = config.models.relevance
    by_repo: dict[str, list[Instance]] = {}
    for instance in load_instances(args.dataset):
        if args.repo in ("all", instance.repo):
            by_repo.setdefault(instance.repo, []).append(instance)
    if not by_repo:
        raise SystemExit(f"no instances of {args.repo} in {args.dataset}")
    source = RepoSource(mirror_dir=args.mirror_dir)
    prompt = RelevancePrompt.load(
        max_tokens=relevance.max_output_tokens, temperature=relevance.temperature
    )
    tokenizer = model_tokenizer(relevance.model)
    file_filter = FileFilter.from_config(config.context)
    prices = PriceTable(config.pricing)
    console = Console(width=None if sys.stdout.isatty() else 150)
    table = Table(title=f"Context preparation, tokens for {relevance.model}")
    columns = (
        "instance",
        "files",
        "paper filter",
        "tokenized",
        "prompt tokens",
        "shared prefix",
        "s",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "instance" else "right", no_wrap=True)
    results: dict[str, list[tuple[InstanceEstimate, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp, RunStore.open(Path(tmp)) as store:
        tokenizer.count_many(["warm up"])  # load the encoding before timing (once per process)
        for name, instances in sorted(by_repo.items()):
            repo = source.git_dir(name)
            for instance in instances[: args.limit]:
                task = ContextTask(
                    instance.instance_id, instance.problem_statement, repo, instance.base_commit
                )
                start = time.perf_counter()
                estimate = estimate_instance(
                    task,
                    file_filter=file_filter,
                    tokenizer=tokenizer,
                    cache=store,
                    prompt=prompt,
                    prices=prices,
                    model=relevance.model,
                    max_file_tokens=config.context.max_file_tokens,
                    ranking_runs=config.context.ranking_runs,
                )
                elapsed = time.perf_counter() - start
                results.setdefault(name, []).append((estimate, elapsed))
                paper = paper_filter_count(
                    repo, instance.base_commit, tuple(config.context.extensions)
                )
                table.add_row(
                    instance.instance_id,
                    str(estimate.files),
                    str(paper),
                    str(estimate.tokenized),
                    f"{estimate.prompt_tokens:,}",
                    f"{estimate.shared_share:.1%}",
                    f"{elapsed:.2f}",
                )
    console.print(table)
    summary = Table(title="Per repo (means per instance)")
    for column in (
        "repo",
        "instances",
        "files",
        "prompt tokens",
        "shared prefix",
        "instructions",
        "tokenized",
        "s first",
        "s mean",
        "s max",
    ):
        summary.add_column(column, justify="left" if column == "repo" else "right", no_wrap=True)
    everything = [pair for pairs in results.values() for pair in pairs]
    for name, pairs in [*sorted(results.items()), ("all", everything)]:
        summary.add_row(name, *_summary(pairs), style="bold" if name == "all" else None)
    console.print(summary)
    console.print(
        f"paper's reading-every-file stage: {PAPER_TOKENS_PER_INSTANCE:,} prompt tokens per instance; "
        "target: enumeration + tokenization < 5 s per instance"
    )


def _summary(pairs: list[tuple[InstanceEstimate, float]]) -> list[str]:
    estimates = [e for e, _ in pairs]
    seconds = [s for _, s in pairs]
    prompt = sum(e.prompt_tokens for e in estimates)
    prefix = sum(e.shared_prefix_tokens for e in estimates)
    system = sum(e.system_tokens * e.files for e in estimates)
    return [
        str(len(estimates)),
        f"{statistics.mean(e.files for e in estimates):.0f}",
        f"{prompt / len(estimates):,.0f}",
        f"{prefix / prompt:.1%}",
        f"{system / prompt:.1%}",
        f"{sum(e.tokenized for e in estimates) / len(estimates):.0f}",
        f"{seconds[0]:.2f}",
        f"{statistics.mean(seconds):.2f}",
        f"{max(seconds):.2f}",
    ]


if __name__ == "__main__":
    main()
