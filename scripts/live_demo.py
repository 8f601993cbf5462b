"""A real run of several instances with a slow model, for watching the live view in a terminal (tmux).

    PYTHONPATH=.:tests python scripts/live_demo.py RUN_DIR [--instances 6] [--latency 0.8]

The shapes repo (tests/pipeline_support.py) in a Docker image, the loopback
fake server answering as the oracle (tests' wire oracle) with ``--latency``
seconds per call through the Anthropic wire format at Anthropic prices, a
budget, and one instance whose issue the oracle does not know (its calls
fail: a failure by kind on screen). The live view is the one ``codemonkeys
run`` shows (codemonkeys/cli/live.py).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from rich.console import Console

from codemonkeys.cli.live import LiveView
from codemonkeys.config import load_config
from codemonkeys.env.grading import build_test_command
from codemonkeys.env.specs import SpecRegistry
from codemonkeys.oracle import reproduction_script
from codemonkeys.pipeline.build import open_services
from codemonkeys.pipeline.run import choose_instances, run_instances
from codemonkeys.sandbox.base import EnvironmentRef
from codemonkeys.testing.fake_server import FakeLLMServer
from codemonkeys.testing.wire_oracle import WireOracle


def main() -> None:
    import logging

    import docker

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # as the CLI does

    from pipeline_support import FILES, SPEC, FixedEnvironment, base_overrides, shapes_instance
    from repo_images import build_repo_image, make_host_repo

    from codemonkeys.sandbox.baseimage import ensure_test_image

    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--instances", type=int, default=6)
    parser.add_argument("--latency", type=float, default=0.8)
    parser.add_argument("--budget", type=float, default=2.0)
    args = parser.parse_args()

    client = docker.from_env()
    mirrors = args.run_dir.parent / f"{args.run_dir.name}-mirrors"
    commit = make_host_repo(mirrors / "local__shapes", FILES)
    tag = build_repo_image(client, ensure_test_image(client), FILES)
    ref = EnvironmentRef(key=f"shapes-{tag}", image=tag, python="python3")
    issues = [f"area(w, h) returns w*w; it should be w*h (seen in report #{n:02d})." for n in range(1, args.instances + 1)]
    instances = [shapes_instance(commit, n, issue) for n, issue in enumerate(issues, start=1)]
    unknown = shapes_instance(commit, args.instances + 1, "Something nobody has described to the oracle.")
    registry = SpecRegistry([SPEC])
    oracle = WireOracle([
        (i.instance_id, i.problem_statement, i.patch,
         reproduction_script(i.test_patch, build_test_command(i, registry.get(i.repo, i.version))))
        for i in instances
    ])
    with FakeLLMServer(responder=oracle, latency_s=args.latency) as server:
        model = "anthropic:claude-sonnet-4-6"
        stages = ("relevance", "ranking", "testing", "editing", "selection")
        config = load_config(None, [
            *(f"models.{stage}.model={model}" for stage in stages),
            *(f"models.{stage}.max_output_tokens=400" for stage in stages),
            f"providers.anthropic.base_url={server.anthropic_base_url}", "providers.anthropic.max_retries=0",
            "generation.trajectories=4", "max_concurrent_instances=3", f"budget.total_usd={args.budget}",
            *base_overrides(mirrors),
        ])
        everything = [*instances, unknown]
        console = Console(stderr=True)
        with open_services(config, args.run_dir, everything, {"ANTHROPIC_API_KEY": "test-key"},
                           environments=FixedEnvironment(ref)) as services:
            chosen = choose_instances(services.store, everything, retry_infra=False)
            with LiveView(services.store, config, console) as view:
                services.events = view.event  # type: ignore[misc]
                asyncio.run(run_instances(services, chosen.run))
    console.print("run finished")


if __name__ == "__main__":
    main()
