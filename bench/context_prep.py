"""How much reading every file costs to prepare, and how big its prompts are.

For every dev instance of one repo (default: django/django in
``verified_dev.jsonl``) with a local git mirror: enumerate the candidate files
at the base commit, count their tokens and the relevance prompts' tokens,
exactly as ``codemonkeys context --estimate`` does, with one token-count
store shared by the instances (a RunStore in a temporary directory, so the
SQLite cost is included): files unchanged across instances are tokenized
once. Prints per instance: files (ours, and with the paper's filter that only
looked at the first path component), blobs tokenized now, prompt tokens, the
shared-prefix share, and seconds; then means.

The shared prefix of a call is the instructions (shared by every call of the
repo) plus the issue (shared by the instance's calls). Target: under 5 s per
django instance (enumeration + tokenization).

    python bench/context_prep.py [--repo django/django] [--dataset FILE] [--mirror-dir DIR] [--limit N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from codemonkeys.config import load_config
from codemonkeys.context.estimate import estimate_instance
from codemonkeys.context.files import FileFilter, model_tokenizer
from codemonkeys.context.gitread import GitObjects
from codemonkeys.context.relevance import RelevancePrompt
from codemonkeys.context.stage import ContextTask
from codemonkeys.llm.pricing import PriceTable
from codemonkeys.store import RunStore
from codemonkeys.swebench.instances import load_instances
from codemonkeys.swebench.repo import RepoSource

HERE = Path(__file__).resolve().parent
PAPER_TOKENS_PER_INSTANCE = 2_940_000


def paper_filter_count(repo: Path, commit: str, extensions: tuple[str, ...]) -> int:
    """Files the paper's filter keeps: the extension, and a first path component that is not a test dir."""
    with GitObjects(repo) as objects:
        entries = objects.list_files(commit)
    return sum(1 for e in entries if e.path.endswith(extensions) and e.path.split("/")[0] not in ("tests", "test", "testing"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default="django/django")
    parser.add_argument("--dataset", type=Path, default=HERE.parent.parent / "shared/data/swebench/verified_dev.jsonl")
    parser.add_argument("--mirror-dir", type=Path, default=Path("/work/mirrors"))
    parser.add_argument("--config", default="verified")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()

    config = load_config(args.config)
    relevance = config.models.relevance
    instances = [i for i in load_instances(args.dataset) if i.repo == args.repo][: args.limit]
    if not instances:
        raise SystemExit(f"no instances of {args.repo} in {args.dataset}")
    source = RepoSource(mirror_dir=args.mirror_dir)
    repo = source.git_dir(args.repo)
    prompt = RelevancePrompt.load(max_tokens=relevance.max_output_tokens, temperature=relevance.temperature)
    tokenizer = model_tokenizer(relevance.model)
    file_filter = FileFilter.from_config(config.context)
    prices = PriceTable(config.pricing)
    console = Console()
    table = Table(title=f"Context preparation: {len(instances)} {args.repo} instance(s), tokens for {relevance.model}")
    for column in ("instance", "files", "paper filter", "tokenized", "prompt tokens", "shared prefix", "seconds"):
        table.add_column(column, justify="left" if column == "instance" else "right")
    seconds: list[float] = []
    estimates = []
    with tempfile.TemporaryDirectory() as tmp, RunStore.open(Path(tmp)) as store:
        # Load the tokenizer before timing (a one-off 0.25 s per process).
        tokenizer.count_many(["warm up"])
        for instance in instances:
            task = ContextTask(instance.instance_id, instance.problem_statement, repo, instance.base_commit)
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
            seconds.append(elapsed)
            estimates.append(estimate)
            table.add_row(
                instance.instance_id,
                str(estimate.files),
                str(paper_filter_count(repo, instance.base_commit, tuple(config.context.extensions))),
                str(estimate.tokenized),
                f"{estimate.prompt_tokens:,}",
                f"{estimate.shared_share:.1%}",
                f"{elapsed:.2f}",
            )
    console.print(table)
    prompt_tokens = [e.prompt_tokens for e in estimates]
    total_prompt = sum(prompt_tokens)
    prefix = sum(e.shared_prefix_tokens for e in estimates)
    system = sum(e.system_tokens * e.files for e in estimates)
    summary = Table(title="Summary")
    summary.add_column("measure")
    summary.add_column("value", justify="right")
    summary.add_row("instances", str(len(estimates)))
    summary.add_row("files per instance (mean)", f"{statistics.mean(e.files for e in estimates):.0f}")
    summary.add_row("prompt tokens per instance (mean)", f"{statistics.mean(prompt_tokens):,.0f}")
    summary.add_row("  paper's reading-every-file stage", f"{PAPER_TOKENS_PER_INSTANCE:,}")
    summary.add_row("shared prefix share (instructions + issue)", f"{prefix / total_prompt:.1%}")
    summary.add_row("  of which instructions (shared by the whole repo)", f"{system / total_prompt:.1%}")
    summary.add_row("blobs tokenized (all instances)", f"{sum(e.tokenized for e in estimates):,}")
    summary.add_row("seconds per instance: first", f"{seconds[0]:.2f}")
    summary.add_row("seconds per instance: mean", f"{statistics.mean(seconds):.2f}")
    summary.add_row("seconds per instance: max", f"{max(seconds):.2f}")
    summary.add_row("target", "< 5 s per instance")
    console.print(summary)


if __name__ == "__main__":
    main()
